"""The Discovered page, its REST API and `manage.py discovered`: what a technician sees of a machine that
registered itself, and accepting (validated as the admin validates), discarding and forgetting it."""

from __future__ import annotations

import io
import json
import secrets

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from audit.models import AuditEntry
from installs import discovery
from installs.discovery_facts import bounded
from inventory.models import DiscoveredMachine, DiscoveryState, Machine, OSProfile
from tests.conftest import make_machine, make_rack, make_site
from tests.integration.installs.test_discovery import facts
from tests.integration.ui.conftest import user_with_role
from tests.integration.ui.test_rest import post, token_client

pytestmark = pytest.mark.django_db

MAC = "52:54:00:d1:5c:01"


@pytest.fixture
def place():
    memory_os = OSProfile.objects.create(
        name="memory-os", method="image", kernel="/memory-os/vmlinuz", initrd="/memory-os/initrd.img"
    )
    site = make_site(slug="dc1", name="DC 1", discovery=True, provisioning_networks="10.0.0.0/8", memory_os=memory_os)
    rack = make_rack(site, name="r01", height_u=42)
    other = make_site(slug="dc2", name="DC 2", discovery=True, provisioning_networks="10.1.0.0/16", memory_os=memory_os)

    class Place:
        pass

    p = Place()
    p.site, p.rack, p.other = site, rack, other
    p.entry = register(site, MAC)
    return p


def register(site, mac: str, address: str = "10.0.0.9", **extra) -> DiscoveredMachine:
    """As the discovery API registers a machine: its facts bounded and their MACs in one spelling first."""
    return discovery.register(site, address, mac, secrets.token_hex(32), bounded(facts(mac, **extra)))


def technician() -> Client:
    client = Client()
    user = User.objects.filter(username="tech").first() or user_with_role("technician", "tech")
    client.force_login(user)
    return client


def viewer() -> Client:
    client = Client()
    client.force_login(User.objects.filter(username="vera").first() or user_with_role("viewer", "vera"))
    return client


# --- the pages ----------------------------------------------------------------------------------------------


def test_the_list_shows_what_a_technician_needs_to_recognise_a_machine(place):
    html = viewer().get("/discovered/").content.decode()
    for shown in (MAC, "10.0.0.9", "Dell Inc.", "PowerEdge R650", "ABC1234", "16 CPUs", "64.0\xa0GB", "S1-AAA",
                  "S2-BBB", "52:54:00:d1:5c:02"):  # fmt: skip
        assert shown in html, shown
    assert 'aria-current="page">Discovered<' in html


def test_the_list_filters_by_site_and_state(place):
    register(place.other, "52:54:00:d1:5c:0a", address="10.1.0.5")
    client = viewer()
    assert "52:54:00:d1:5c:0a" in client.get("/discovered/").content.decode()
    at_dc1 = client.get("/discovered/", {"site": "dc1"}).content.decode()
    assert MAC in at_dc1 and "52:54:00:d1:5c:0a" not in at_dc1
    discovery.discard(place.entry.pk, discovery.Actor.system("test"))
    assert MAC not in client.get("/discovered/").content.decode(), "waiting ones only, by default"
    assert MAC in client.get("/discovered/", {"state": "discarded"}).content.decode()
    rows = client.get("/discovered/", {"partial": "rows", "state": "all"}).content.decode()
    assert MAC in rows and "<html" not in rows


def test_the_list_costs_the_same_queries_however_long(place):
    client = viewer()
    with CaptureQueriesContext(connection) as few:
        client.get("/discovered/")
    for i in range(10):
        register(place.site, f"52:54:00:d1:6c:{i:02x}", address=f"10.0.0.{20 + i}")
    with CaptureQueriesContext(connection) as many:
        client.get("/discovered/")
    assert len(many.captured_queries) == len(few.captured_queries)


def test_the_detail_shows_every_fact_and_offers_accept_only_to_technicians(place):
    url = f"/discovered/{place.entry.pk}/"
    html = viewer().get(url).content.decode()
    assert "127.0.0.77" in html and "&#x27;efi&#x27;: True" in html, "every fact, as reported"
    assert "Accept" not in html and "Discard" not in html
    html = technician().get(url).content.decode()
    assert 'name="hostname"' in html and ">Accept<" in html and ">Discard<" in html
    assert viewer().get("/discovered/999999999999999999999/").status_code == 404


def test_accept_form_errors_are_shown_on_the_form_and_nothing_is_written(place):
    taken = make_machine(place.rack, hostname="web-01", position_u=10, height_u=2)
    client = technician()
    url = f"/discovered/{place.entry.pk}/accept"
    data = {"hostname": taken.hostname, "rack": place.rack.pk, "position_u": 20, "height_u": 1}
    response = client.post(url, data)
    assert response.status_code == 400 and "already exists" in response.content.decode()
    response = client.post(url, {**data, "hostname": "web-02", "position_u": 11})
    assert response.status_code == 400 and "overlaps web-01" in response.content.decode()
    response = client.post(url, {**data, "hostname": "web-02", "rack": make_rack(place.other).pk})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    assert not Machine.objects.filter(hostname="web-02").exists()
    assert DiscoveredMachine.objects.get(pk=place.entry.pk).state == DiscoveryState.WAITING

    response = client.post(url, {**data, "hostname": "web-02"})
    assert response.status_code == 302 and response["Location"] == "/machines/web-02/"
    machine = Machine.objects.get(hostname="web-02")
    assert machine.status == "new" and machine.pxe_nic.mac == MAC and machine.position_u == 20
    entry = DiscoveredMachine.objects.get(pk=place.entry.pk)
    assert entry.state == DiscoveryState.ACCEPTED and entry.pending_task["kind"] == "poweroff"
    assert entry.decided_by_label == "tech"
    assert AuditEntry.objects.filter(action="discovery.accepted", actor_label="tech").exists()


def test_discard_and_forget_from_the_page(place):
    client = technician()
    assert client.post(f"/discovered/{place.entry.pk}/discard").status_code == 302
    entry = DiscoveredMachine.objects.get(pk=place.entry.pk)
    assert entry.state == DiscoveryState.DISCARDED and entry.pending_task["kind"] == "poweroff"
    assert AuditEntry.objects.filter(action="discovery.discarded", actor_label="tech").exists()
    again = client.post(f"/discovered/{place.entry.pk}/discard", follow=True).content.decode()
    assert "only a waiting one can be discarded" in again
    assert client.post(f"/discovered/{place.entry.pk}/forget").status_code == 302
    assert not DiscoveredMachine.objects.filter(pk=place.entry.pk).exists()


def test_page_actions_need_the_technician_role_and_the_csrf_token(place):
    assert viewer().post(f"/discovered/{place.entry.pk}/discard").status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user_with_role("technician", "strict"))
    assert strict.post(f"/discovered/{place.entry.pk}/discard").status_code == 403
    assert DiscoveredMachine.objects.get(pk=place.entry.pk).state == DiscoveryState.WAITING


# --- the REST API -------------------------------------------------------------------------------------------


def test_api_lists_and_shows_discovered_machines(place):
    client, _ = token_client("viewer")
    listed = client.get("/api/v1/discovered", {"site": "dc1"}).json()
    assert listed["count"] == 1
    row = listed["results"][0]
    assert (row["mac"], row["address"], row["serial"], row["state"]) == (MAC, "10.0.0.9", "ABC1234", "waiting")
    assert [d["serial"] for d in row["disks"]] == ["S1-AAA", "S2-BBB"]
    assert [n["mac"] for n in row["nics"]] == [MAC, "52:54:00:d1:5c:02"]
    detail = client.get(f"/api/v1/discovered/{place.entry.pk}").json()
    assert detail["facts"]["bmc"] == {"address": "127.0.0.77", "port": 16999}
    assert place.entry.key_hash not in json.dumps(detail)
    assert client.get("/api/v1/discovered", {"stat": "all"}).status_code == 400, "an unknown parameter is refused"
    assert client.get("/api/v1/discovered/424242").status_code == 404
    assert post(client, f"/api/v1/discovered/{place.entry.pk}/discard").status_code == 403


def test_api_accept_names_the_field_it_refuses_and_then_accepts(place):
    client, _ = token_client("technician")
    make_machine(place.rack, hostname="web-01", position_u=10)
    url = f"/api/v1/discovered/{place.entry.pk}/accept"
    body = {"hostname": "web-01", "rack": "dc1/r01", "position_u": 20}
    for change, field in [({}, "hostname"), ({"hostname": "web-02", "rack": "dc1/r99"}, "rack"),
                          ({"hostname": "web-02", "position_u": 10}, "position_u"),
                          ({"hostname": "web-02", "position_u": 0}, "position_u")]:  # fmt: skip
        response = post(client, url, {**body, **change})
        assert response.status_code == 400 and response.json()["field"] == field, response.json()
    response = post(client, url, {**body, "hostname": "web-02", "rack": place.rack.pk})
    assert response.status_code == 201, response.json()
    accepted = response.json()
    assert accepted["hostname"] == "web-02" and accepted["rack"] == "dc1/r01" and accepted["status"] == "new"
    assert accepted["discovered"]["state"] == "accepted" and accepted["discovered"]["machine"] == "web-02"
    refused = post(client, url, {**body, "hostname": "web-03"})
    assert refused.status_code == 409 and "only a waiting one" in refused.json()["detail"]


def test_api_discard_inventory_and_forget(place):
    client, _ = token_client("technician")
    base = f"/api/v1/discovered/{place.entry.pk}"
    assert post(client, f"{base}/inventory").json()["pending_task"] == "inventory"
    assert post(client, f"{base}/forget").status_code == 409, "only a discarded one is forgotten"
    discarded = post(client, f"{base}/discard").json()
    assert discarded["state"] == "discarded" and discarded["pending_task"] == "poweroff"
    assert post(client, f"{base}/forget").status_code == 204
    assert client.get(base).status_code == 404


# --- the command line ---------------------------------------------------------------------------------------


def run(*args) -> str:
    out = io.StringIO()
    call_command("discovered", *args, stdout=out)
    return out.getvalue()


def test_manage_py_discovered(place):
    listed = run("list")
    assert MAC in listed and "Dell Inc. PowerEdge R650 serial ABC1234" in listed and "2 disks, 2 NICs" in listed
    shown = run("show", str(place.entry.pk))
    assert "disk sdb" in shown and "serial S2-BBB" in shown and "(boot)" in shown and '"efi": true' in shown
    with pytest.raises(CommandError, match="position_u: .*does not fit"):
        run("accept", str(place.entry.pk), "--hostname", "web-02", "--rack", "dc1/r01", "--position", "42",
            "--height", "2")  # fmt: skip
    with pytest.raises(CommandError, match="rack: There is no rack 'dc1/r99'"):
        run("accept", str(place.entry.pk), "--hostname", "web-02", "--rack", "dc1/r99", "--position", "5")
    out = run("accept", str(place.entry.pk), "--hostname", "web-02", "--rack", "dc1/r01", "--position", "5")
    assert "web-02 in inventory (status new) at dc1/r01 U5" in out
    assert AuditEntry.objects.get(action="discovery.accepted").actor_label.startswith("cli:")
    other = register(place.site, "52:54:00:d1:5c:0b", address="10.0.0.11", nics=[{"mac": "52:54:00:d1:5c:0b"}])
    assert "discarded" in run("discard", str(other.pk))
    assert "52:54:00:d1:5c:0b" in run("list", "--state", "discarded")
    assert "forgotten" in run("forget", str(other.pk))
    with pytest.raises(CommandError, match="There is no discovered machine"):
        run("show", str(other.pk))
