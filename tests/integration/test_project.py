"""Start-up, settings, the login page, admin pages and the demo commands."""

import os
import subprocess
import sys

import pytest
from django.core.management import call_command

from audit.models import AuditEntry
from inventory.models import BMC, NIC, Machine, OSProfile, Rack, Site
from tests.conftest import make_bmc, make_machine


def run_check(env_overrides: dict) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PROVISIONER_DEV", "SECRET_KEY", "PROVISIONER_FIELD_KEYS", "DEBUG")
    }
    env.update(env_overrides)
    return subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("missing", ["SECRET_KEY", "PROVISIONER_FIELD_KEYS"])
def test_production_start_without_a_secret_stops_naming_the_variable(missing):
    env = {"SECRET_KEY": "x" * 60, "PROVISIONER_FIELD_KEYS": "unused", "ALLOWED_HOSTS": "example.net"}
    del env[missing]
    result = run_check(env)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


def test_production_start_with_a_bad_field_key_says_what_a_key_looks_like():
    result = run_check({"SECRET_KEY": "x" * 60, "PROVISIONER_FIELD_KEYS": "not-a-key", "ALLOWED_HOSTS": "example.net"})
    assert result.returncode == 0  # keys are checked when first used, not at start-up
    from django.core.exceptions import ImproperlyConfigured

    from inventory import crypto

    with pytest.raises(ImproperlyConfigured, match="not a Fernet key"):
        crypto._fernet(("not-a-key",))


def test_debug_is_refused_outside_development():
    result = run_check({"SECRET_KEY": "x" * 60, "PROVISIONER_FIELD_KEYS": "k", "DEBUG": "1"})
    assert result.returncode != 0 and "DEBUG=1 is only allowed with PROVISIONER_DEV=1" in result.stderr


@pytest.mark.django_db
def test_login_page_is_served_and_the_dashboard_needs_a_login(client):
    assert client.get("/").status_code == 302
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    health = client.get("/healthz").json()  # no scheduler or worker runs here: the parts, not the whole
    assert health["database"] == {"ok": True} and health["redis"] == {"ok": True}


@pytest.mark.django_db
def test_admin_lists_and_searches_inventory(admin_client):
    bmc = make_bmc(machine=make_machine(serial="SRV-XYZ-1"), address="10.20.30.40")
    machine = bmc.machine
    mac = machine.nics.get().mac
    for url in (
        "/admin/inventory/site/",
        "/admin/inventory/rack/",
        "/admin/inventory/machine/",
        "/admin/inventory/osprofile/",
        "/admin/audit/auditentry/",
        f"/admin/inventory/machine/{machine.pk}/change/",
    ):
        assert admin_client.get(url).status_code == 200, url
    for term in (machine.hostname, mac.upper().replace(":", "-"), "SRV-XYZ", "10.20.30.40"):
        page = admin_client.get("/admin/inventory/machine/", {"q": term}).content.decode()
        assert f">{machine.hostname}<" in page, term
    page = admin_client.get("/admin/inventory/machine/", {"q": "no-such-thing"}).content.decode()
    assert f">{machine.hostname}<" not in page
    rack_lookup = admin_client.get(
        "/admin/autocomplete/",
        {"term": machine.rack.name, "app_label": "inventory", "model_name": "machine", "field_name": "rack"},
    )
    assert rack_lookup.json()["results"][0]["text"] == str(machine.rack)


@pytest.mark.django_db
def test_audit_entries_are_read_only_in_the_admin(admin_client):
    call_command("ensure_admin", stdout=open(os.devnull, "w"))
    entry = AuditEntry.objects.first()
    assert admin_client.get(f"/admin/audit/auditentry/{entry.pk}/delete/").status_code == 403
    admin_client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"action": "x"})
    assert AuditEntry.objects.get(pk=entry.pk).action == entry.action


@pytest.mark.django_db
def test_load_demo_is_idempotent(capsys):
    call_command("load_demo")
    call_command("load_demo")
    site = Site.objects.get(slug="demo")
    assert Rack.objects.filter(site=site).count() == 2
    machines = Machine.objects.filter(rack__site=site)
    assert machines.count() == 8
    assert NIC.objects.filter(machine__in=machines, is_pxe=True).count() == 8
    assert {b.driver for b in BMC.objects.filter(machine__in=machines)} == {"fake"}
    # Every BMC has credentials to log in with: its own, or (the second rack's) the site's defaults.
    assert all(all(b.credentials(site)[:2]) for b in BMC.objects.filter(machine__in=machines))
    assert {b.credentials(site)[2] for b in BMC.objects.filter(machine__in=machines)} == {"machine", "site"}
    names = set(OSProfile.objects.values_list("name", flat=True))
    assert {
        "ubuntu-24.04-autoinstall",
        "debian-12-preseed",
        "rocky-9-kickstart",
        "centos-7-kickstart",
        "memory-os-image",
    } <= names
    for profile in OSProfile.objects.all():
        profile.full_clean()
    assert "8 machines (0 new)" in capsys.readouterr().out


@pytest.mark.django_db
def test_ensure_admin_prints_the_password_once(capsys):
    call_command("ensure_admin")
    first = capsys.readouterr().out
    password = first.split("password: ")[1].split()[0]
    from django.contrib.auth import authenticate

    assert authenticate(username="admin", password=password) is not None
    call_command("ensure_admin")
    assert password not in capsys.readouterr().out
