"""The discovery API as an unknown machine's agent calls it (docs/agent-api.md, Discovery), through Django's whole
request stack on real PostgreSQL and Redis: the happy path from registration to accept and poweroff, and each
abuse the API refuses before anything is stored."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from datetime import timedelta

import pytest
from channels.testing import ApplicationCommunicator
from django.utils import timezone

from audit.models import AuditEntry
from audit.service import Actor
from installs import discovery
from inventory.models import BMC, NIC, DiscoveredMachine, DiscoveryState, Machine, MachineStatus
from tests.conftest import make_machine, make_rack
from tests.integration.installs.asgi_client import ROUTE

MAC = "52:54:00:d1:5c:01"
SECOND_NIC = "52:54:00:d1:5c:02"
REGISTER = "/api/v1/discovery/register"
TECHNICIAN = Actor.system("test technician")


def new_key() -> str:
    return secrets.token_hex(32)


def facts(mac: str = MAC, **extra) -> dict:
    return {
        "cpus": 16,
        "memory_bytes": 64 << 30,
        "disks": [
            {"name": "sda", "path": "/dev/sda", "size_bytes": 480 << 30, "serial": "S1-AAA", "model": "SSD 480"},
            {"name": "sdb", "path": "/dev/sdb", "size_bytes": 4 << 40, "serial": "S2-BBB", "model": "HDD 4T"},
        ],
        "nics": [
            {"name": "eno1", "mac": mac.upper(), "link": True, "speed_mbps": 10000},
            {"name": "eno2", "mac": SECOND_NIC, "link": False, "speed_mbps": None},
        ],
        "dmi": {"vendor": "Dell Inc.", "product": "PowerEdge R650", "serial": "ABC1234"},
        "bmc": {"address": "127.0.0.77", "port": 16999},
        "efi": True,
        **extra,
    }


@pytest.fixture
def site(lab, settings):
    """The lab site, discovering, with the loopback as its provisioning network (the test client's address)."""
    settings.DISCOVERY_POLL_S = 5.0
    settings.DISCOVERY_CALLS_PER_S = 1000  # the tests call faster than agents; test_polls_faster... limits it
    lab.site.discovery = True
    lab.site.provisioning_networks = "127.0.0.0/8, 2001:db8::/32"
    lab.site.memory_os = lab.image_profile()
    lab.site.full_clean()
    lab.site.save()
    return lab.site


class Agent:
    """An unknown machine's agent, as the protocol has it, through the test client."""

    def __init__(self, client, mac: str = MAC, address: str = "127.0.0.1", key: str | None = None):
        self.client, self.mac, self.address = client, mac, address
        self.key = key or new_key()
        self.id = None

    def post(self, path: str, body, *, auth: bool = True, **headers):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        if auth:
            headers.setdefault("HTTP_AUTHORIZATION", f"Discovery {self.key}")
        return self.client.post(
            path, data, content_type=headers.pop("content_type", "application/json"), REMOTE_ADDR=self.address,
            **headers,
        )  # fmt: skip

    def register(self, body=None, **headers):
        body = body if body is not None else {"mac": self.mac, "key": self.key, "facts": facts(self.mac)}
        response = self.post(REGISTER, body, auth=False, **headers)
        if response.status_code == 200:
            self.id = response.json()["id"]
        return response

    def poll(self):
        return self.post(f"/api/v1/discovery/{self.id}/poll", {})

    def report(self, task: str, reported: dict):
        return self.post(f"/api/v1/discovery/{self.id}/facts", {"task": task, "facts": reported})

    def done(self, task: str, **extra):
        return self.post(f"/api/v1/discovery/{self.id}/done", {"task": task, **extra})


def refusal(response, status: int, reason: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["reason"] == reason and body["message"] == body["detail"] and body["message"], body
    return body


def placement(lab, hostname="new-01", position_u=20):
    return discovery.Placement(hostname=hostname, rack=lab.rack, position_u=position_u, height_u=1)


def nothing_stored():
    assert DiscoveredMachine.objects.count() == 0
    assert not AuditEntry.objects.filter(action__startswith="discovery.").exists()


# --- the happy path -----------------------------------------------------------------------------------------


def test_register_accept_poweroff_done(site, lab, client):
    agent = Agent(client)
    response = agent.register()
    assert response.status_code == 200 and response.json() == {"id": agent.id, "poll_s": 5.0}
    row = DiscoveredMachine.objects.get(pk=agent.id)
    assert row.state == DiscoveryState.WAITING and row.site == site and row.address == "127.0.0.1"
    assert row.key_hash == hashlib.sha256(agent.key.encode()).hexdigest()
    assert row.facts["nics"][0]["mac"] == MAC, "MACs are stored in one spelling"
    assert (row.vendor, row.model, row.serial) == ("Dell Inc.", "PowerEdge R650", "ABC1234")

    # The agent retried (a lost answer): the same registration.
    assert agent.register().json()["id"] == agent.id
    assert DiscoveredMachine.objects.get(pk=agent.id).registrations == 2
    assert agent.poll().json() == {"task": None, "poll_s": 5.0}

    machine = discovery.accept(agent.id, placement(lab), TECHNICIAN)
    assert machine.status == MachineStatus.NEW and machine.rack == lab.rack and machine.position_u == 20
    assert (machine.vendor, machine.model, machine.serial) == ("Dell Inc.", "PowerEdge R650", "ABC1234")
    nics = {nic.mac: nic for nic in machine.nics.all()}
    assert set(nics) == {MAC, SECOND_NIC} and nics[MAC].is_pxe and not nics[SECOND_NIC].is_pxe
    assert (nics[MAC].name, nics[MAC].speed_mbps) == ("eno1", 10000)
    assert (machine.bmc.driver, machine.bmc.address, machine.bmc.port) == ("ipmi", "127.0.0.77", 16999)
    assert machine.bmc.username == "" and not machine.bmc.has_password, "the site's default credentials apply"

    task = agent.poll().json()["task"]
    assert task["kind"] == "poweroff"
    assert agent.done(task["id"]).json() == {"ok": True}
    refusal(agent.poll(), 401, "Unauthorized")
    row.refresh_from_db()
    assert row.state == DiscoveryState.ACCEPTED and row.machine == machine and row.pending_task is None

    # Booting again before its local-boot file is there: it is a known machine now.
    body = refusal(agent.register(), 403, "KnownMachine")
    assert body["then"] == "reboot" and machine.hostname in body["message"]

    actions = list(AuditEntry.objects.filter(action__startswith="discovery.").values_list("action", flat=True))
    assert actions.count("discovery.registered") == 1 and "discovery.registered_again" in actions
    assert {"discovery.accepted", "discovery.powered_off", "discovery.known_machine_refused"} <= set(actions)
    assert AuditEntry.objects.filter(action="machine.accepted_from_discovery", object_id=str(machine.pk)).exists()
    dumped = json.dumps(list(AuditEntry.objects.values("details", "object_label")))
    assert agent.key not in dumped and row.key_hash not in dumped, "no key, nor its hash, in the audit log"


def test_an_inventory_task_replaces_the_facts(site, client):
    agent = Agent(client)
    agent.register()
    row = discovery.request_inventory(agent.id, TECHNICIAN)
    task = agent.poll().json()["task"]
    assert task == row.pending_task and task["kind"] == "inventory"
    refusal(agent.report("inventory-000000000000", facts(cpus=8)), 409, "NotCurrentTask")
    refusal(agent.done("inventory-000000000000"), 409, "NotCurrentTask")
    assert agent.report(task["id"], facts(cpus=8)).json() == {"ok": True}
    row.refresh_from_db()
    assert row.facts["cpus"] == 8 and row.pending_task is None and row.facts_updated_at is not None
    assert agent.poll().json()["task"] is None
    assert AuditEntry.objects.filter(action="discovery.facts", object_id=str(row.pk)).exists()


def test_an_unknown_task_kind_reported_as_an_error_is_taken(site, client):
    agent = Agent(client)
    agent.register()
    task = discovery.request_inventory(agent.id, TECHNICIAN).pending_task
    assert agent.done(task["id"], error="UnknownTaskKind").json() == {"ok": True}
    entry = AuditEntry.objects.get(action="discovery.task_done")
    assert entry.details["error"] == "UnknownTaskKind"
    refusal(agent.done(task["id"], error="not camel case"), 400, "InvalidRequest")


# --- what is refused ----------------------------------------------------------------------------------------


def test_a_body_over_256_kib_is_refused_before_it_is_parsed(site, client):
    agent = Agent(client)
    padding = "x" * 1000
    big = facts(pci=[{"description": padding} for _ in range(262)])  # ~270 KB of JSON
    body = refusal(agent.register({"mac": MAC, "key": agent.key, "facts": big}), 413, "TooLarge")
    assert "262144 bytes" in body["message"]
    # The size is read with a limit whatever the body says: not JSON at all, and no usable length either.
    refusal(agent.register(b"{" * (300 * 1024)), 413, "TooLarge")
    nothing_stored()


async def _chunked(path: str, chunks: list[bytes]) -> tuple[int, dict]:
    """POST through the ASGI application as daphne passes a chunked upload: no Content-Length, many pieces."""
    from config.asgi import application

    scope = {
        "type": "http", "http_version": "1.1", "method": "POST", "path": path, "raw_path": path.encode(),
        "query_string": b"", "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000), "scheme": "http",
    }  # fmt: skip
    communicator = ApplicationCommunicator(application, scope)
    for i, chunk in enumerate(chunks):
        await communicator.send_input({"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1})
    start = await communicator.receive_output(10)
    body = await communicator.receive_output(10)
    await communicator.wait(10)  # the request's end closes its database connection (request_finished)
    return start["status"], json.loads(body["body"])


def test_a_chunked_body_without_a_length_is_read_no_further_than_the_limit(site):
    try:
        status, body = asyncio.run(_chunked(REGISTER, [b'{"facts": "' + b"x" * 65536] * 5 + [b'"}']))
    finally:
        ROUTE.close()
    assert status == 413 and body["reason"] == "TooLarge"
    nothing_stored()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"facts": facts(disks=[{"name": f"sd{i}", "path": "/dev/x"} for i in range(300)])}, "facts.disks"),
        ({"facts": facts(nics=[{"mac": f"52:54:00:00:{i >> 8:02x}:{i & 255:02x}"} for i in range(300)])}, "facts.nics"),
        ({"facts": facts(memory_modules=list(range(257)))}, "facts.memory_modules"),
        ({"facts": facts(pci=[{"slot": i} for i in range(4097)])}, "facts.pci"),
        ({"facts": facts(nics=[{"name": "eno1", "mac": "zz:zz"}])}, "facts.nics.0.mac"),
        ({"facts": facts(dmi={"vendor": 7})}, "facts.dmi.vendor"),
        ({"facts": facts(bmc="10.0.0.1")}, "facts.bmc"),
        ({"facts": ["not", "an", "object"]}, "facts"),
        ({"facts": None}, "facts"),
        ({"key": "short"}, "key"),
        ({"key": "A" * 64}, "key"),
        ({"mac": "ff:ff:ff:ff:ff:ff"}, "mac"),
        ({"mac": None}, "mac"),
    ],
)
def test_malformed_registrations_are_refused_naming_the_field(site, client, change, field):
    agent = Agent(client)
    body = refusal(agent.register({"mac": MAC, "key": agent.key, "facts": facts(), **change}), 400, "InvalidRequest")
    assert body["field"] == field, body
    nothing_stored()


def test_a_large_servers_pci_list_is_taken(site, client):
    agent = Agent(client)
    pci = [{"slot": f"0000:{i >> 8:02x}:{i & 255:02x}.0", "class": "Bridge"} for i in range(600)]
    assert agent.register({"mac": MAC, "key": agent.key, "facts": facts(pci=pci)}).status_code == 200
    assert len(DiscoveredMachine.objects.get().facts["pci"]) == 600


def test_long_strings_are_cut_not_refused(site, client):
    agent = Agent(client)
    long_facts = facts(dmi={"vendor": "V" * 5000, "product": "P", "serial": "S"})
    assert agent.register({"mac": MAC, "key": agent.key, "facts": long_facts}).status_code == 200
    assert len(DiscoveredMachine.objects.get().facts["dmi"]["vendor"]) == 1024


def test_a_body_that_is_not_json_is_refused(site, client):
    agent = Agent(client)
    refusal(agent.register("mac=x", content_type="application/x-www-form-urlencoded"), 415, "InvalidRequest")
    refusal(agent.register(b"{not json"), 400, "InvalidRequest")
    refusal(agent.register(b'{"a": "\\u0000"}'), 400, "InvalidRequest")
    refusal(agent.register(b"[1]"), 400, "InvalidRequest")
    assert client.get(REGISTER).status_code == 405
    nothing_stored()


def test_a_flood_from_one_address_is_refused_with_a_wait(site, client, settings):
    settings.DISCOVERY_REGISTER_PER_MIN = 10
    agents = [Agent(client, mac=f"52:54:00:f1:00:{i:02x}") for i in range(12)]
    answers = [agent.register().status_code for agent in agents]
    assert answers == [200] * 10 + [429] * 2
    response = agents[-1].register()
    body = refusal(response, 429, "TooManyRequests")
    assert 0 < body["retry_after_s"] <= 60 and 1 <= int(response["Retry-After"]) <= 60
    assert DiscoveredMachine.objects.count() == 10
    # Another machine, another address: its own count.
    assert Agent(client, mac="52:54:00:f1:01:01", address="127.0.0.2").register().status_code == 200


def test_polls_faster_than_the_limit_are_refused(site, client, settings):
    settings.DISCOVERY_CALLS_PER_S = 3
    agent = Agent(client)
    agent.register()
    statuses = [agent.poll().status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:], statuses


def test_an_address_outside_the_provisioning_networks_is_refused(site, client):
    for address in ("192.0.2.7", "10.0.0.1", "2001:db9::1"):
        body = refusal(Agent(client, address=address).register(), 403, "NotProvisioningAddress")
        assert address in body["message"]
    nothing_stored()
    assert Agent(client, address="2001:db8::10").register().status_code == 200
    agent = Agent(client, mac="52:54:00:d1:5c:09")
    agent.register()
    agent.address = "192.0.2.7"
    refusal(agent.poll(), 403, "NotProvisioningAddress")


def test_a_site_that_does_not_discover_refuses(site, client):
    site.discovery = False
    site.save()
    refusal(Agent(client).register(), 403, "DiscoveryOff")
    nothing_stored()


def test_a_machine_in_inventory_is_sent_back_to_its_disk(site, lab, client):
    known = lab.machine()
    mac = known.pxe_nic.mac
    body = refusal(Agent(client, mac=mac).register({"mac": mac, "key": new_key(), "facts": facts(mac)}), 403,
                   "KnownMachine")  # fmt: skip
    assert body["then"] == "reboot" and known.hostname in body["message"]
    entry = AuditEntry.objects.get(action="discovery.known_machine_refused")
    assert entry.object_id == str(known.pk) and entry.details["mac"] == mac and entry.source_ip == "127.0.0.1"
    assert DiscoveredMachine.objects.count() == 0


def test_a_machine_whose_other_nic_is_known_is_refused_without_a_reboot(site, lab, client):
    known = make_machine(lab.rack, position_u=30, with_nic=False)
    NIC.objects.create(machine=known, mac=SECOND_NIC, is_pxe=True)
    body = refusal(Agent(client).register(), 403, "NicOfKnownMachine")
    assert "then" not in body and SECOND_NIC in body["message"] and MAC in body["message"]
    assert DiscoveredMachine.objects.count() == 0


def test_another_key_for_a_waiting_mac_is_refused_until_the_first_falls_silent(site, client, settings):
    first = Agent(client)
    first.register()
    second = Agent(client, key=new_key())
    refusal(second.register(), 409, "KeyMismatch")
    assert first.poll().status_code == 200, "the first agent is not disturbed"
    refusal(Agent(client, key=new_key()).post(f"/api/v1/discovery/{first.id}/poll", {}), 401, "Unauthorized")
    # Silent for longer than DISCOVERY_REKEY_AFTER_S: its memory OS rebooted and lost the key.
    stale = timezone.now() - timedelta(seconds=settings.DISCOVERY_REKEY_AFTER_S + 1)
    DiscoveredMachine.objects.filter(pk=first.id).update(last_seen_at=stale)
    assert second.register().json()["id"] == first.id
    refusal(first.poll(), 401, "Unauthorized")
    assert second.poll().status_code == 200
    assert AuditEntry.objects.filter(action="discovery.rekeyed", object_id=str(first.id)).exists()


def test_a_discarded_machine_is_powered_off_and_refused_until_forgotten(site, client):
    agent = Agent(client)
    agent.register()
    discovery.discard(agent.id, TECHNICIAN)
    task = agent.poll().json()["task"]
    assert task["kind"] == "poweroff"
    agent.done(task["id"])
    body = refusal(agent.poll(), 401, "Discarded")
    assert "test technician" in body["message"]
    refusal(agent.register(), 403, "Discarded")
    refusal(Agent(client, key=new_key()).register(), 403, "Discarded")
    assert AuditEntry.objects.filter(action="discovery.discarded_refused").count() == 2
    discovery.forget(agent.id, TECHNICIAN)
    fresh = Agent(client, key=new_key())
    assert fresh.register().status_code == 200 and fresh.id != agent.id
    assert AuditEntry.objects.filter(action="discovery.forgotten").exists()


def test_a_site_holds_at_most_its_limit_of_waiting_machines(site, client, settings):
    settings.DISCOVERY_MAX_WAITING = 2
    assert Agent(client, mac="52:54:00:f2:00:01").register().status_code == 200
    assert Agent(client, mac="52:54:00:f2:00:02", address="127.0.0.2").register().status_code == 200
    body = refusal(Agent(client, mac="52:54:00:f2:00:03", address="127.0.0.3").register(), 503, "DiscoveryFull")
    assert body["retry_after_s"] > 0 and "accept or discard" in body["message"]
    assert DiscoveredMachine.objects.count() == 2


def test_polls_need_the_registrations_key(site, client):
    agent = Agent(client)
    agent.register()
    path = f"/api/v1/discovery/{agent.id}/poll"
    refusal(agent.post(path, {}, HTTP_AUTHORIZATION=""), 401, "Unauthorized")
    refusal(agent.post(path, {}, HTTP_AUTHORIZATION=f"Bearer {agent.key}"), 401, "Unauthorized")
    refusal(agent.post("/api/v1/discovery/999999999/poll", {}), 401, "Unauthorized")
    refusal(agent.post("/api/v1/discovery/99999999999999999/poll", {}), 401, "Unauthorized")


# --- Redis down ---------------------------------------------------------------------------------------------


def test_without_redis_registrations_wait_and_registered_machines_still_poll(site, client, private_redis, settings):
    settings.REDIS_URL = private_redis.url
    agent = Agent(client)
    assert agent.register().status_code == 200
    discovery.discard(agent.id, TECHNICIAN)
    private_redis.stop()
    body = refusal(Agent(client, mac="52:54:00:f3:00:01").register(), 503, "RateLimiterUnavailable")
    assert body["retry_after_s"] > 0
    assert DiscoveredMachine.objects.count() == 1, "nothing registered while registrations cannot be counted"
    assert agent.poll().json()["task"]["kind"] == "poweroff", "a discarded machine still learns to power off"


# --- accept and discard as a person does them ---------------------------------------------------------------


def test_accept_validates_as_the_admin_does_and_writes_nothing_on_error(site, lab, client):
    agent = Agent(client)
    agent.register()
    neighbour = lab.machine()  # U1
    cases = [
        (discovery.Placement(neighbour.hostname, lab.rack, 30), "hostname"),
        (discovery.Placement("Bad_Name", lab.rack, 30), "hostname"),
        (discovery.Placement("new-01", lab.rack, neighbour.position_u), "position_u"),
        (discovery.Placement("new-01", lab.rack, 42, height_u=2), "position_u"),
        (discovery.Placement("new-01", None, 5), "rack"),
        (discovery.Placement("new-01", make_rack(), 5), "rack"),
    ]
    for wrong, field in cases:
        with pytest.raises(discovery.ValidationError) as caught:
            discovery.accept(agent.id, wrong, TECHNICIAN)
        assert field in caught.value.message_dict, (wrong, caught.value)
    assert Machine.objects.count() == 1 and not NIC.objects.filter(mac=MAC).exists()
    assert DiscoveredMachine.objects.get(pk=agent.id).state == DiscoveryState.WAITING
    discovery.accept(agent.id, placement(lab), TECHNICIAN)
    with pytest.raises(discovery.DiscoveryRefused, match="accepted: only a waiting one"):
        discovery.discard(agent.id, TECHNICIAN)


def test_accept_refuses_a_nic_that_another_machine_took_meanwhile(site, lab, client):
    agent = Agent(client)
    agent.register()
    other = make_machine(lab.rack, position_u=30, with_nic=False)
    NIC.objects.create(machine=other, mac=SECOND_NIC, is_pxe=True)
    with pytest.raises(discovery.ValidationError, match=f"NIC {SECOND_NIC} .* {other.hostname}"):
        discovery.accept(agent.id, placement(lab), TECHNICIAN)
    assert not Machine.objects.filter(hostname="new-01").exists()


def test_a_bmc_address_the_facts_do_not_give_makes_no_bmc(site, lab, client):
    agent = Agent(client)
    agent.register({"mac": MAC, "key": agent.key, "facts": facts(bmc={"address": "0.0.0.0"})})
    machine = discovery.accept(agent.id, placement(lab), TECHNICIAN)
    assert not BMC.objects.filter(machine=machine).exists()


def test_addresses_are_stored_as_the_database_takes_them(site, client):
    site.provisioning_networks = "127.0.0.0/8, fe80::/10"
    site.save()
    mapped = Agent(client, address="::ffff:127.0.0.5")
    assert mapped.register().status_code == 200
    assert DiscoveredMachine.objects.get(pk=mapped.id).address == "127.0.0.5", "an IPv4 client of a dual-stack socket"
    zoned = Agent(client, mac="52:54:00:d1:5c:0e", address="fe80::1%eth0")
    assert zoned.register().status_code == 200
    assert DiscoveredMachine.objects.get(pk=zoned.id).address == "fe80::1"
