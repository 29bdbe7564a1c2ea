"""The audit record: one record() function, diffs without secrets, and a table the database
refuses to rewrite."""

import sqlite3
import subprocess
import sys

import pytest
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEntry
from audit.service import Actor, record
from inventory.models import Machine
from tests.conftest import make_machine, make_rack, make_user

pytestmark = pytest.mark.django_db


def test_record_writes_actor_object_redacted_details_and_source_ip():
    user = make_user("alice")
    machine = make_machine()
    entry = record(Actor.for_user(user), "machine.power_on", machine, {"password": "pw", "why": "test"}, ip="127.0.0.9")
    entry = AuditEntry.objects.get(pk=entry.pk)
    assert (entry.actor_kind, entry.actor_label, entry.actor_user) == ("user", "alice", user)
    assert (entry.object_type, entry.object_id, entry.object_label) == (
        "inventory.machine",
        str(machine.pk),
        machine.hostname,
    )
    assert entry.details == {"password": "[redacted]", "why": "test"}
    assert entry.source_ip == "127.0.0.9"


def test_entries_cannot_be_changed_or_deleted_through_the_model():
    entry = record(Actor.system(), "test.thing")
    entry.action = "rewritten"
    with pytest.raises(PermissionDenied):
        entry.save()
    with pytest.raises(PermissionDenied):
        entry.delete()


def test_postgresql_refuses_update_and_delete_of_audit_rows():
    entry = record(Actor.system(), "test.thing")
    for sql in (
        "UPDATE audit_auditentry SET action = 'rewritten' WHERE id = %s",
        "DELETE FROM audit_auditentry WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [entry.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(action="rewritten")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    assert AuditEntry.objects.get(pk=entry.pk).action == "test.thing"


def test_sqlite_refuses_update_and_delete_of_audit_rows(tmp_path):
    """The embedded database of `make run` holds the same guarantee."""
    db = tmp_path / "audit.sqlite3"
    env = {
        "PATH": "/usr/bin:/bin",
        "PROVISIONER_DEV": "1",
        "PROVISIONER_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{db}",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], env=env, check=True, timeout=120)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO audit_auditentry"
            " (at, actor_kind, actor_label, action, object_type, object_id, object_label, details)"
            " VALUES ('2026-01-01', 'system', 'system', 'x', '', '', '', '{}')"
        )
        for sql in ("UPDATE audit_auditentry SET action = 'y'", "DELETE FROM audit_auditentry"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT action FROM audit_auditentry").fetchall() == [("x",)]


def test_admin_add_change_delete_are_audited_with_a_field_diff(admin_client):
    rack = make_rack()
    response = admin_client.post(
        "/admin/inventory/machine/add/",
        {
            "hostname": "web01",
            "status": "new",
            "rack": rack.pk,
            "position_u": 5,
            "height_u": 2,
            "depth": "full",
            "serial": "SN1",
            "nics-TOTAL_FORMS": 1,
            "nics-INITIAL_FORMS": 0,
            "nics-0-mac": "AA-BB-CC-00-00-01",
            "nics-0-is_pxe": "on",
            "bmc-TOTAL_FORMS": 0,
            "bmc-INITIAL_FORMS": 0,
            "pdu_outlets-TOTAL_FORMS": 0,
            "pdu_outlets-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    machine = Machine.objects.get(hostname="web01")
    assert machine.nics.get().mac == "aa:bb:cc:00:00:01"
    add = AuditEntry.objects.get(action="inventory.machine.add")
    assert add.actor_label == "root" and add.source_ip == "127.0.0.1"
    assert add.details["changes"]["hostname"] == "web01" and add.details["changes"]["position_u"] == 5
    nic_add = AuditEntry.objects.get(action="inventory.nic.add")
    assert nic_add.details["changes"]["mac"] == "aa:bb:cc:00:00:01"

    change = {
        "hostname": "web01",
        "status": "maintenance",
        "rack": rack.pk,
        "position_u": 5,
        "height_u": 2,
        "depth": "full",
        "serial": "SN2",
        "nics-TOTAL_FORMS": 1,
        "nics-INITIAL_FORMS": 1,
        "nics-0-id": machine.nics.get().pk,
        "nics-0-machine": machine.pk,
        "nics-0-mac": "aa:bb:cc:00:00:01",
        "nics-0-is_pxe": "on",
        "bmc-TOTAL_FORMS": 0,
        "bmc-INITIAL_FORMS": 0,
        "pdu_outlets-TOTAL_FORMS": 0,
        "pdu_outlets-INITIAL_FORMS": 0,
    }
    assert admin_client.post(f"/admin/inventory/machine/{machine.pk}/change/", change).status_code == 302
    entry = AuditEntry.objects.get(action="inventory.machine.change")
    assert entry.details == {"changes": {"status": ["new", "maintenance"], "serial": ["SN1", "SN2"]}}

    response = admin_client.post(f"/admin/inventory/machine/{machine.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    deleted = AuditEntry.objects.get(action="inventory.machine.delete")
    assert deleted.object_label == "web01" and deleted.details["was"]["serial"] == "SN2"


def test_admin_refuses_malformed_input_with_the_field_and_value(admin_client):
    rack = make_rack()
    response = admin_client.post(
        "/admin/inventory/machine/add/",
        {
            "hostname": "-bad-",
            "status": "new",
            "rack": rack.pk,
            "position_u": 1,
            "height_u": 1,
            "depth": "full",
            "nics-TOTAL_FORMS": 2,
            "nics-INITIAL_FORMS": 0,
            "nics-0-mac": "aa:bb:cc:dd:ee:zz",
            "nics-0-is_pxe": "on",
            "nics-1-mac": "aa:bb:cc:dd:ee:01",
            "nics-1-ip": "10.0.0.300",
            "bmc-TOTAL_FORMS": 0,
            "bmc-INITIAL_FORMS": 0,
            "pdu_outlets-TOTAL_FORMS": 0,
            "pdu_outlets-INITIAL_FORMS": 0,
        },
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "“-bad-” is not a valid hostname" in page
    assert "“aa:bb:cc:dd:ee:zz” is not a MAC address" in page
    assert "“10.0.0.300” is not a valid IP address." in page
    assert not Machine.objects.filter(hostname="-bad-").exists()
    assert not AuditEntry.objects.filter(action__startswith="inventory.").exists()


def test_admin_requires_exactly_one_pxe_nic(admin_client):
    rack = make_rack()
    form = {
        "hostname": "two-pxe",
        "status": "new",
        "rack": rack.pk,
        "position_u": 1,
        "height_u": 1,
        "depth": "full",
        "nics-TOTAL_FORMS": 2,
        "nics-INITIAL_FORMS": 0,
        "nics-0-mac": "aa:bb:cc:dd:ee:01",
        "nics-0-is_pxe": "on",
        "nics-1-mac": "aa:bb:cc:dd:ee:02",
        "nics-1-is_pxe": "on",
        "bmc-TOTAL_FORMS": 0,
        "bmc-INITIAL_FORMS": 0,
        "pdu_outlets-TOTAL_FORMS": 0,
        "pdu_outlets-INITIAL_FORMS": 0,
    }
    response = admin_client.post("/admin/inventory/machine/add/", form)
    assert "Mark exactly one NIC as the PXE NIC" in response.content.decode()
    form["nics-1-mac"] = "AA:BB:CC:DD:EE:01"
    form.pop("nics-1-is_pxe")
    response = admin_client.post("/admin/inventory/machine/add/", form)
    assert "MAC aa:bb:cc:dd:ee:01 is entered twice." in response.content.decode()
    assert not Machine.objects.filter(hostname="two-pxe").exists()


def test_logins_and_failed_logins_are_recorded(client):
    make_user("bob", password="correct horse battery staple")
    client.post("/login/", {"username": "bob", "password": "wrong"})
    client.post("/login/", {"username": "bob", "password": "correct horse battery staple"})
    failed = AuditEntry.objects.get(action="auth.login_failed")
    assert failed.details == {"username": "bob"} and failed.source_ip == "127.0.0.1"
    assert "wrong" not in str(failed.details)
    assert AuditEntry.objects.get(action="auth.login").actor_label == "bob"
