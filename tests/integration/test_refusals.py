"""A refusal is audited where it is decided (request_installs, enqueue_actions, perform), so the web pages,
the REST API and the command line leave the same trail: who asked, from which address, what was refused
and why. One row per refusal: the page or the API adds none of its own."""

from __future__ import annotations

import getpass
import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.api_tokens import create_token
from audit.models import AuditEntry
from audit.service import Actor
from core import queues
from installs.models import Install
from inventory.stock import sync_stock_profiles
from tests import redis_claim
from tests.conftest import make_bmc, make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db

PROFILE = "debian-12-preseed"
ADDRESS = "192.0.2.77"


@pytest.fixture
def protected():
    redis_claim.flush()
    sync_stock_profiles()
    machine = make_machine(make_rack(make_site(slug="lab")), hostname="db-01", protected=True)
    make_bmc(machine, address="10.0.0.21")
    return machine


@pytest.fixture
def page_client():
    client = Client(REMOTE_ADDR=ADDRESS)
    client.user = user_with_role("technician", "tess")
    client.force_login(client.user)
    return client


def the_install_refusal(machine) -> AuditEntry:
    entry = AuditEntry.objects.get(action="install.refused")
    assert entry.details["profile"] == PROFILE and entry.details["machines"] == [machine.hostname]
    assert any("Protected, install refused: db-01" in p for p in entry.details["problems"])
    assert not Install.objects.filter(machine=machine).exists()
    return entry


def the_power_refusal(machine, action: str) -> AuditEntry:
    entry = AuditEntry.objects.get(action=f"machine.{action}")
    assert (entry.object_type, entry.object_id) == ("inventory.machine", str(machine.pk))
    assert entry.details == {"ok": False, "refused": "protected"}
    return entry


def test_install_refused_on_the_machine_page_is_audited(page_client, protected):
    response = page_client.post(
        "/machines/action",
        {"action": "install", "profile": PROFILE, "machine": protected.pk, "confirmed": "1", "confirm": "db-01"},
    )
    assert response.status_code == 302
    entry = the_install_refusal(protected)
    assert (entry.actor_user, entry.actor_label, entry.source_ip) == (page_client.user, "tess", ADDRESS)


def test_install_refused_through_the_rest_api_is_audited(protected):
    user = user_with_role("technician", "robot")
    _, key = create_token(user, "ci", actor=Actor.system("test"))
    api = Client(HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR=ADDRESS)
    body = json.dumps({"profile": PROFILE, "machines": ["db-01"]})
    response = api.post("/api/v1/installs", body, content_type="application/json")
    assert response.status_code == 409 and "Protected" in response.json()["problems"][0]
    entry = the_install_refusal(protected)
    assert (entry.actor_user, entry.actor_label, entry.source_ip) == (user, "robot", ADDRESS)


def test_install_refused_on_the_command_line_is_audited(protected):
    with pytest.raises(CommandError, match="Protected"):
        call_command("install", "db-01", "--profile", PROFILE)
    entry = the_install_refusal(protected)
    assert (entry.actor_kind, entry.actor_label, entry.source_ip) == ("system", f"cli:{getpass.getuser()}", None)


def test_power_off_refused_on_the_machine_page_is_audited(page_client, protected):
    response = page_client.post(
        "/machines/action", {"action": "off", "machine": protected.pk, "confirmed": "1", "confirm": "db-01"}
    )
    assert response.status_code == 302
    entry = the_power_refusal(protected, "off")
    assert (entry.actor_user, entry.actor_label, entry.source_ip) == (page_client.user, "tess", ADDRESS)


def test_power_off_refused_on_the_command_line_is_audited_the_same_way(protected):
    with pytest.raises(CommandError, match="Protected, power off refused: db-01"):
        call_command("bmc", "db-01", "off")
    entry = the_power_refusal(protected, "off")
    assert (entry.actor_kind, entry.actor_label, entry.source_ip) == ("system", f"cli:{getpass.getuser()}", None)


def test_a_bulk_power_action_refused_for_one_machine_queues_nothing_and_says_which(page_client, protected):
    other = make_machine(protected.rack, hostname="web-01", position_u=5)
    make_bmc(other, address="10.0.0.22")  # it could be cycled: only the protected one is refused
    page_client.post(
        "/machines/action", {"action": "cycle", "machine": [protected.pk, other.pk], "confirmed": "1", "confirm": "2"}
    )
    assert AuditEntry.objects.filter(action="machine.cycle").count() == 1
    the_power_refusal(protected, "cycle")
    assert queues.site_queue("lab").count == 0
