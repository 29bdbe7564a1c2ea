"""BMC passwords: ciphertext at rest, clear failure on a wrong key, rotation, write-only."""

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from audit.models import AuditEntry
from inventory import crypto
from inventory.models import BMC
from tests.conftest import make_bmc, make_machine

pytestmark = pytest.mark.django_db

PASSWORD = "Sup3r-Secret-BMC"


def raw_password_column(bmc) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_ciphertext FROM inventory_bmc WHERE id = %s", [bmc.pk])
        return cursor.fetchone()[0]


def test_the_column_holds_ciphertext_that_decrypts_to_the_password(settings):
    bmc = make_bmc(password=PASSWORD)
    raw = raw_password_column(bmc)
    assert PASSWORD not in raw
    assert raw.startswith("gAAAAA")  # a Fernet token
    assert Fernet(settings.PROVISIONER_FIELD_KEYS[0].encode()).decrypt(raw.encode()).decode() == PASSWORD
    assert BMC.objects.get(pk=bmc.pk).get_password() == PASSWORD


def test_a_wrong_key_raises_a_clear_error_and_never_returns_ciphertext(settings):
    bmc = make_bmc(password=PASSWORD)
    settings.PROVISIONER_FIELD_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.FieldDecryptError) as exc:
        BMC.objects.get(pk=bmc.pk).get_password()
    message = str(exc.value)
    assert f"BMC password of {bmc.machine.hostname}" in message
    assert "PROVISIONER_FIELD_KEYS" in message
    assert raw_password_column(bmc) not in message and PASSWORD not in message


def test_rotation_re_encrypts_every_row_under_the_newest_key(settings):
    old_key = settings.PROVISIONER_FIELD_KEYS[0]
    bmcs = [make_bmc(password=f"{PASSWORD}-{i}") for i in range(3)]
    before = [raw_password_column(b) for b in bmcs]
    new_key = Fernet.generate_key().decode()
    settings.PROVISIONER_FIELD_KEYS = [new_key, old_key]
    call_command("rotate_field_keys", stdout=open("/dev/null", "w"))
    settings.PROVISIONER_FIELD_KEYS = [new_key]  # the old key can now be dropped
    for i, bmc in enumerate(bmcs):
        assert raw_password_column(bmc) != before[i]
        assert BMC.objects.get(pk=bmc.pk).get_password() == f"{PASSWORD}-{i}"
    entry = AuditEntry.objects.filter(action="crypto.keys_rotated").get()
    assert ["inventory.bmc.password_ciphertext", 3] in entry.details["counts"]


def test_rotation_changes_nothing_when_a_row_cannot_be_decrypted(settings):
    lost = make_bmc(password="written-with-a-key-that-is-then-lost")
    settings.PROVISIONER_FIELD_KEYS = [Fernet.generate_key().decode()]
    current = make_bmc(password=PASSWORD)
    settings.PROVISIONER_FIELD_KEYS = [Fernet.generate_key().decode(), settings.PROVISIONER_FIELD_KEYS[0]]
    before = raw_password_column(current)
    with pytest.raises(CommandError, match=rf"1 stored secret\(s\) cannot(.|\n)*BMC of {lost.machine.hostname} "):
        call_command("rotate_field_keys")
    assert raw_password_column(current) == before  # all or nothing
    assert not AuditEntry.objects.filter(action="crypto.keys_rotated").exists()


def test_password_never_in_repr_str_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    bmc = make_bmc(password=PASSWORD)
    logging.getLogger("test").info("bmc %r %s", bmc, bmc)
    assert PASSWORD not in repr(bmc) and PASSWORD not in str(bmc)
    assert PASSWORD not in caplog.text


def test_admin_never_renders_the_password_back(admin_client):
    bmc = make_bmc(password=PASSWORD)
    page = admin_client.get(f"/admin/inventory/machine/{bmc.machine.pk}/change/").content.decode()
    assert "bmc-0-password" in page  # the write-only field is there...
    assert PASSWORD not in page and raw_password_column(bmc) not in page  # ...empty


def test_admin_sets_a_new_password_and_blank_keeps_the_old(admin_client):
    machine = make_machine()
    nic = machine.nics.get()
    form = {
        "hostname": machine.hostname,
        "status": "ready",
        "rack": machine.rack_id,
        "position_u": 1,
        "height_u": 1,
        "depth": "full",
        "nics-TOTAL_FORMS": 1,
        "nics-INITIAL_FORMS": 1,
        "nics-0-id": nic.pk,
        "nics-0-machine": machine.pk,
        "nics-0-mac": nic.mac,
        "nics-0-is_pxe": "on",
        "bmc-TOTAL_FORMS": 1,
        "bmc-INITIAL_FORMS": 0,
        "pdu_outlets-TOTAL_FORMS": 0,
        "pdu_outlets-INITIAL_FORMS": 0,
        "bmc-0-driver": "ipmi",
        "bmc-0-address": "10.1.2.3",
        "bmc-0-port": 623,
        "bmc-0-username": "root",
        "bmc-0-password": PASSWORD,
    }
    response = admin_client.post(f"/admin/inventory/machine/{machine.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    bmc = BMC.objects.get(machine=machine)
    assert bmc.get_password() == PASSWORD
    ciphertext = bmc.password_ciphertext
    form.update(
        {
            "bmc-INITIAL_FORMS": 1,
            "pdu_outlets-TOTAL_FORMS": 0,
            "pdu_outlets-INITIAL_FORMS": 0,
            "bmc-0-id": bmc.pk,
            "bmc-0-machine": machine.pk,
            "bmc-0-password": "",
            "bmc-0-username": "ops",
        }
    )
    response = admin_client.post(f"/admin/inventory/machine/{machine.pk}/change/", form)
    assert response.status_code == 302
    bmc.refresh_from_db()
    assert (bmc.username, bmc.password_ciphertext) == ("ops", ciphertext)
    entries = AuditEntry.objects.filter(object_type="inventory.bmc").order_by("id")
    assert [e.action for e in entries] == ["inventory.bmc.add", "inventory.bmc.change"]
    assert entries[0].details["changes"]["password"] == "changed"
    assert entries[1].details["changes"] == {"username": ["root", "ops"]}
    for entry in AuditEntry.objects.all():
        assert PASSWORD not in str(entry.details) and ciphertext not in str(entry.details)
