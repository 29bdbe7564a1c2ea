"""The machine lifecycle on the pages: the status with its reason and age, only the actions the table allows from
there, status changes audited with their reason, operations through the action form with its confirmations,
refusals in words, the hardware page version by version, and the machine list's hardware filters."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.contrib.messages import get_messages
from django.db import transaction
from django.urls import reverse

from audit.models import AuditEntry
from audit.service import Actor
from installs.models import Install
from inventory import facts
from inventory.lifecycle import actions_for
from inventory.models import BUSY_STATUSES, Machine, MachineStatus
from tests.conftest import make_machine
from tests.integration.ui.lifecycle_data import (
    FULL_FACTS,
    commissioned,
    facts_version,
    library_test_workflow,
    put,
    step_args,
)
from tests.integration.ui.test_pages import client_for

pytestmark = pytest.mark.django_db


def page(client, machine) -> str:
    response = client.get(reverse("inventory:machine-detail", args=[machine.hostname]))
    assert response.status_code == 200
    return response.content.decode()


def offered(html: str) -> set[str]:
    """The lifecycle actions the page offers: its panel's forms, and deploy as the Act form's install option."""
    names = set(re.findall(r'data-lifecycle="([a-z-]+)"', html))
    if '<option value="install">' in html:
        names.add("deploy")
    return names


def said(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# What a technician may do from each status (inventory/lifecycle.py's table, written out to catch a page that
# offers more, or less).
EXPECTED = {
    "new": {"commission", "deploy", "mark-broken", "enter-maintenance"},
    "commissioning": {"mark-broken", "enter-maintenance"},
    "ready": {"commission", "test", "deploy", "release", "mark-broken", "enter-maintenance"},
    "testing": {"mark-broken", "enter-maintenance"},
    "deploying": set(),
    "deployed": {"deploy", "release", "mark-broken", "enter-maintenance"},
    "releasing": set(),
    "failed": {"commission", "test", "deploy", "release", "mark-broken", "enter-maintenance"},
    "broken": {"commission", "test", "mark-fixed", "enter-maintenance"},
    "maintenance": {"commission", "test", "mark-broken", "exit-maintenance"},
}


def test_the_page_offers_exactly_the_actions_the_table_allows_from_each_status(scene):
    technician, viewer = client_for("technician"), client_for("viewer")
    assert set(EXPECTED) == set(MachineStatus.values)
    for status, expected in EXPECTED.items():
        # A busy status is held by an install (busy-01 has one running); without one it would be stale.
        machine = put(scene.busy if status in BUSY_STATUSES else scene.idle, status, reason=f"reason for {status}")
        assert {a.name for a in actions_for(machine)} == expected, status
        html = page(technician, machine)
        assert offered(html) == expected, status
        assert f'data-status="{status}"' in html and f"reason for {status}" in html
        if not expected:
            assert f"Nothing can be done from {status}." in html
        assert offered(page(viewer, machine)) == set(), status  # a viewer sees where it is, and no action


def test_a_busy_status_no_install_holds_offers_every_operation(scene):
    machine = put(scene.idle, "deploying")  # its install failed without settling the status
    html = page(client_for("technician"), machine)
    assert offered(html) == {"commission", "test", "deploy", "release"}
    assert "No install holds it any more" in html


def test_marks_need_a_reason_and_are_audited_with_it(scene):
    client = client_for("technician")
    machine = put(scene.idle, "ready")
    url = reverse("inventory:machine-mark", args=[machine.hostname])
    response = client.post(url, {"action": "mark-broken", "reason": "   "})
    assert response.status_code == 302
    assert "Mark broken needs a reason, for the audit log and the next technician." in said(response)
    machine.refresh_from_db()
    assert machine.status == "ready" and not AuditEntry.objects.filter(action="machine.lifecycle").exists()

    response = client.post(url, {"action": "mark-broken", "reason": "PSU 2 smells burnt"})
    machine.refresh_from_db()
    assert (machine.status, machine.status_reason) == ("broken", "PSU 2 smells burnt")
    assert machine.status_changed_at is not None
    entry = AuditEntry.objects.get(action="machine.lifecycle")
    assert entry.actor_label == "technician-pages" and entry.object_id == str(machine.pk)
    assert entry.details == {"from": "ready", "to": "broken", "reason": "PSU 2 smells burnt"}
    html = page(client, machine)
    assert "PSU 2 smells burnt" in html and offered(html) == EXPECTED["broken"]

    client.post(url, {"action": "mark-fixed", "reason": "PSU replaced"})
    machine.refresh_from_db()
    assert (machine.status, machine.status_reason) == ("ready", "")
    assert AuditEntry.objects.filter(action="machine.lifecycle", details__reason="PSU replaced").exists()


def test_maintenance_in_and_out(scene):
    client = client_for("technician")
    machine = put(scene.idle, "deployed")
    url = reverse("inventory:machine-mark", args=[machine.hostname])
    client.post(url, {"action": "enter-maintenance", "reason": "firmware campaign"})
    machine.refresh_from_db()
    assert (machine.status, machine.status_reason) == ("maintenance", "firmware campaign")
    client.post(url, {"action": "exit-maintenance"})  # no reason needed to come back
    machine.refresh_from_db()
    assert machine.status == "ready"
    assert AuditEntry.objects.filter(action="machine.lifecycle").count() == 2


def test_a_mark_the_table_refuses_is_said_and_changes_nothing(scene):
    client = client_for("technician")
    machine = put(scene.busy, "deploying")
    response = client.post(reverse("inventory:machine-mark", args=[machine.hostname]),
                           {"action": "enter-maintenance", "reason": "now"})  # fmt: skip
    assert response.status_code == 302
    assert "busy-01 is deploying: enter maintenance is not possible from there. It can: nothing." in said(response)
    machine.refresh_from_db()
    assert machine.status == "deploying"
    assert not AuditEntry.objects.filter(action="machine.lifecycle").exists()
    # An operation is not a mark, and a viewer marks nothing.
    response = client.post(reverse("inventory:machine-mark", args=[machine.hostname]), {"action": "release"})
    assert any("runs an operation" in m for m in said(response))
    response = client_for("viewer").post(reverse("inventory:machine-mark", args=[machine.hostname]),
                                         {"action": "mark-broken", "reason": "x"})  # fmt: skip
    assert response.status_code == 403


def test_release_needs_the_hostname_typed_then_is_requested(scene, memory_os):
    client = client_for("technician")
    machine = put(scene.idle, "deployed")
    url = reverse("inventory:machine-action")
    post = {"action": "release", "machine": machine.pk, "next": f"/machines/{machine.hostname}/"}
    confirm = client.post(url, post)  # no JavaScript: the confirm page
    assert confirm.status_code == 200 and 'name="confirm"' in confirm.content.decode()
    assert client.post(url, {**post, "confirmed": "1", "confirm": "wrong"}).status_code == 400
    assert not Install.objects.filter(machine=machine, purpose="release").exists()
    response = client.post(url, {**post, "confirmed": "1", "confirm": machine.hostname})
    assert response.status_code == 302 and response["Location"] == f"/machines/{machine.hostname}/"
    install = Install.objects.get(machine=machine, purpose="release")
    assert install.requested_by_label == "technician-pages" and install.plan.flow.name == "stock-release"
    assert f"Release: requested for 1 machine(s) as {install.batch}." in said(response)
    machine.refresh_from_db()
    assert machine.status == "releasing"


def test_test_runs_a_test_workflow_with_its_cpu_burn_and_refuses_a_bad_duration(scene, memory_os):
    library_test_workflow("burn-in-72h")
    client = client_for("technician")
    machine = put(scene.idle, "ready")
    html = page(client, machine)
    assert '<select name="workflow"' in html and "<option>burn-in-72h</option>" in html
    assert "<option>stock-test</option>" in html
    assert "<option>scene-flow</option>" not in html  # a deploy workflow of the library
    url = reverse("inventory:machine-action")
    post = {"action": "test", "machine": machine.pk, "confirmed": "1", "workflow": "burn-in-72h"}
    response = client.post(url, {**post, "cpu_burn_s": "ten minutes"})
    assert any(m.startswith("cpu_burn_s: “ten minutes” is not a number of seconds") for m in said(response))
    response = client.post(url, {**post, "workflow": "scene-flow"})
    assert any(m.startswith("workflow: there is no test workflow “scene-flow”") for m in said(response))
    assert not Install.objects.filter(machine=machine, purpose="test").exists()
    client.post(url, {**post, "cpu_burn_s": "600", "nic_speed_mbps": "25000"})
    install = Install.objects.get(machine=machine, purpose="test")
    assert install.plan.flow.name == "burn-in-72h"
    assert step_args(install, "stock-cpu-burn") == ["600"] and step_args(install, "stock-nic-speed") == ["25000"]


def test_bulk_operations_are_refused_for_all_when_one_is_refused(scene, memory_os):
    client = client_for("technician")
    ready = put(scene.idle, "ready")
    html = client.get(reverse("inventory:machine-list")).content.decode()
    for action in ("commission", "test", "release"):
        assert f'<option value="{action}">' in html
    post = {"action": "commission", "machine": [ready.pk, scene.busy.pk], "confirmed": "1"}
    response = client.post(reverse("inventory:machine-action"), post)
    assert [m for m in said(response) if "busy-01 is already being installed" in m]
    assert not Install.objects.filter(purpose="commission").exists()
    entry = AuditEntry.objects.get(action="install.refused")
    assert entry.details["purpose"] == "commission" and entry.details["machines"] == ["busy-01", "idle-01"]
    client.post(reverse("inventory:machine-action"), {**post, "machine": [ready.pk]})
    assert Install.objects.get(purpose="commission").machine == ready


def test_operations_follow_the_table_and_protection_in_words(scene, memory_os):
    client = client_for("technician")
    url = reverse("inventory:machine-action")
    machine = put(scene.idle, "broken", "fans")
    post = {"action": "install", "profile": scene.profile.name, "machine": machine.pk, "confirmed": "1",
            "confirm": machine.hostname}  # fmt: skip
    before = Install.objects.count()
    response = client.post(url, post)
    assert any("idle-01 is broken: deploy is not possible from there." in m for m in said(response))
    response = client.post(url, {"action": "release", "machine": machine.pk, "confirmed": "1", "confirm": "idle-01"})
    assert any("idle-01 is broken: release is not possible from there." in m for m in said(response))
    assert Install.objects.count() == before
    put(machine, "ready")
    Machine.objects.filter(pk=machine.pk).update(protected=True)
    response = client.post(url, post)
    assert any("Protected, install refused: idle-01" in m for m in said(response))
    response = client.post(url, {"action": "commission", "machine": machine.pk, "confirmed": "1"})
    assert any("Protected, commissioning (it reboots into the memory OS) refused: idle-01" in m
               for m in said(response))  # fmt: skip
    assert Install.objects.count() == before
    Machine.objects.filter(pk=machine.pk).update(protected=False)
    response = client.post(url, post)
    assert any("install(s) of debian-12-preseed requested" in m for m in said(response))
    assert Install.objects.filter(machine=machine, state="queued", purpose="deploy").exists()


# --- hardware ---------------------------------------------------------------------------------


def test_the_hardware_page_shows_the_latest_facts_and_every_version_with_its_changes(scene):
    machine = scene.idle
    older = {**FULL_FACTS, "memory_bytes": 256 * 2**30, "nics": FULL_FACTS["nics"][:1]}
    facts_version(machine, 1, older)
    facts_version(machine, 2, FULL_FACTS, changes=[
        {"path": "memory_bytes", "before": 256 * 2**30, "after": 512 * 2**30},
        {"path": "nics.1", "before": None, "after": {"name": "eno1"}},
    ])  # fmt: skip
    client = client_for("viewer")
    html = client.get(reverse("inventory:machine-hardware", args=[machine.hostname])).content.decode()
    for text in ("AMD EPYC 7543 32-Core Processor", "M393A8G40AB2-CWE", "MOD-SERIAL-A1", "S64HNE0T123456",
                 "0x5000c500d1234567", "NVMe", "HDD", "FAILED", "Reallocated_Sector_Ct 2048", "mlx5_core",
                 "16.35.2000", "leaf-r07-a port Ethernet12/1 (srv-r07-u12)", "no LLDP neighbour heard",
                 "MT27800 Family [ConnectX-5]", "2.14.1", "CHASSIS-SN-1", "10.9.8.7", "ipmitool lan print",
                 "SVC-TAG-1", "UEFI", "has reallocated sectors", "the first version", "<code>memory_bytes</code>",
                 "<code>274877906944</code>", "<code>nics.1</code>", "(the latest)"):  # fmt: skip
        assert text in html, text
    v1 = reverse("inventory:machine-hardware-version", args=[machine.hostname, 1])
    assert v1 in html
    old = client.get(v1).content.decode()
    assert "Facts version <strong>1</strong>" in old and "see the latest" in old
    assert "eno1" not in old.split("<h2>Cabling")[0]  # version 1 had one NIC
    assert client.get(reverse("inventory:machine-hardware-version", args=[machine.hostname, 9])).status_code == 404
    # The machine page shows the latest version in short, and links to all of it.
    detail = page(client, machine)
    assert "facts version 2" in detail and "S64HNE0T123456" in detail
    assert reverse("inventory:machine-hardware", args=[machine.hostname]) in detail


def test_the_hardware_page_renders_empty_odd_and_missing_facts(scene):
    client = client_for("viewer")
    url = reverse("inventory:machine-hardware", args=[scene.idle.hostname])
    assert "Not commissioned yet: commission the machine" in client.get(url).content.decode()
    facts_version(scene.idle, 1, {})
    html = client.get(url).content.decode()
    assert "No facts in this version." in html
    # An agent of another version: keys of the wrong type, lists of the wrong things, nulls everywhere.
    odd = {"cpus": "many", "memory_bytes": -1, "cpu": [1, 2], "disks": {"sda": 1}, "nics": [None, "eth0", {}],
           "pci": "none", "firmware": None, "bmc": 7, "dmi": {"vendor": ["x"]}, "notes": "text", "memory_modules": [3],
           "efi": "yes"}  # fmt: skip
    facts_version(scene.idle, 2, odd, changes="not a list")
    assert client.get(url).status_code == 200
    assert client.get(reverse("inventory:machine-detail", args=[scene.idle.hostname])).status_code == 200
    # Before commissioning kept versions, an install's agent left facts on the machine: still shown.
    Machine.objects.filter(pk=scene.busy.pk).update(facts={"cpus": 8, "disks": [{"path": "/dev/vda"}]})
    html = client.get(reverse("inventory:machine-hardware", args=[scene.busy.hostname])).content.decode()
    assert "came with an install" in html and "/dev/vda" in html


def test_the_machine_page_shows_the_switch_port_or_that_no_neighbour_was_heard(scene):
    client = client_for("viewer")
    commissioned(scene.idle, cores=32, memory_gib=256, nvme=2, switch="leaf-r07-a", port="Ethernet12/1")
    commissioned(scene.busy, cores=32, memory_gib=256, lldp_seen=False)
    html = page(client, scene.idle)
    assert "leaf-r07-a <code>Ethernet12/1</code>" in html
    assert "32 cores · 256 GiB · 2 disks (2 NVMe) · 10 Gb/s" in html
    assert "no LLDP neighbour heard" in page(client, scene.busy)


# --- the list's hardware filters ----------------------------------------------------------------


@pytest.fixture
def fleet(scene):
    """Four commissioned machines and the scene's two that never were."""
    rack = scene.rack
    machines = {
        "big": commissioned(make_machine(rack, hostname="big-01", position_u=5), cores=128, memory_gib=1024, nvme=4,
                            ssd=2, nic_mbps=100000, cpu="AMD EPYC 9654", switch="leaf-r01-a", port="Ethernet1/1"),
        "mid": commissioned(make_machine(rack, hostname="mid-01", position_u=6), cores=64, memory_gib=502.5, ssd=2,
                            nic_mbps=25000, cpu="Intel(R) Xeon(R) Gold 6338", switch="leaf-r01-a", port="Ethernet1/2"),
        "store": commissioned(make_machine(rack, hostname="store-01", position_u=7), cores=16, memory_gib=128,
                              hdd=12, ssd=1, nic_mbps=25000, switch="leaf-r01-b", port="Ethernet1/1"),
        "old": commissioned(make_machine(rack, hostname="old-01", position_u=8), cores=8, memory_gib=32, hdd=2,
                            nic_mbps=1000, cpu="Intel(R) Xeon(R) CPU E5-2620"),
    }  # fmt: skip
    put(machines["old"], "broken", "DIMM B2 uncorrectable errors")
    return machines


def listed(client, **params) -> list[str]:
    response = client.get(reverse("inventory:machine-list"), params)
    assert response.status_code == 200, response.content[:300]
    return sorted(re.findall(r'data-hostname="([^"]+)"', response.content.decode()))


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"memory_gib_min": "500"}, ["big-01", "mid-01"]),
        ({"memory_gib_min": "502.5"}, ["big-01", "mid-01"]),
        ({"memory_gib_min": "0.5", "cores_min": "64"}, ["big-01", "mid-01"]),
        ({"cpu_model": "xeon"}, ["mid-01", "old-01", "store-01"]),
        ({"cores_min": "100"}, ["big-01"]),
        ({"disks_min": "12"}, ["store-01"]),
        ({"disk_type": "nvme"}, ["big-01"]),
        ({"disk_type": "ssd"}, ["big-01", "mid-01", "store-01"]),
        ({"disk_type": "hdd", "status": "broken"}, ["old-01"]),
        ({"nic_speed_min": "25000"}, ["big-01", "mid-01", "store-01"]),
        ({"switch": "LEAF-R01-A"}, ["big-01", "mid-01"]),
        ({"switch_port": "ethernet1/1"}, ["big-01", "store-01"]),
        ({"switch": "leaf-r01-b", "switch_port": "Ethernet1/1"}, ["store-01"]),
        ({"switch": "leaf-r01-a", "switch_port": "Ethernet1/9"}, []),
    ],
)
def test_the_list_filters_on_hardware(fleet, params, expected):
    assert listed(client_for("technician"), **params) == expected


def test_the_list_shows_the_reason_on_hover_and_the_hardware(fleet):
    html = client_for("viewer").get(reverse("inventory:machine-list"), {"q": "old-01"}).content.decode()
    assert re.search(r'class="badge s-broken" title="DIMM B2 uncorrectable errors — since \d{4}-', html)
    assert "8 cores · 32 GiB · 2 disks (2 HDD) · 1 Gb/s" in html


@pytest.mark.parametrize(
    "params, field",
    [
        ({"memory_gib_min": "lots"}, "memory_gib_min"),
        ({"memory_gib_min": "nan"}, "memory_gib_min"),
        ({"cores_min": "-1"}, "cores_min"),
        ({"disks_min": "99999999999999999999"}, "disks_min"),
        ({"nic_speed_min": "25G"}, "nic_speed_min"),
        ({"disk_type": "tape"}, "disk_type"),
        ({"status": "installing"}, "status"),
    ],
)
def test_a_filter_that_means_nothing_is_a_400_in_words_on_the_list_and_the_csv(fleet, params, field):
    client = client_for("technician")
    assert listed(client)  # the rows are there without the bad filter
    response = client.get(reverse("inventory:machine-list"), params)
    assert response.status_code == 400
    html = response.content.decode()
    assert f"Filter {field}: “" in html and "Fix the filter above." in html
    assert "data-hostname" not in html
    response = client.get(reverse("inventory:machine-export"), params)
    assert response.status_code == 400 and f"Refused: {field}: “" in response.content.decode()


def test_the_csv_export_carries_the_filters_and_the_hardware(fleet):
    response = client_for("viewer").get(reverse("inventory:machine-export"), {"disk_type": "hdd"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["hostname"] for r in rows] == ["old-01", "store-01"]
    old = rows[0]
    assert (old["status"], old["status_reason"], old["cpu_cores"], old["memory_bytes"], old["hdds"]) == (
        "broken", "DIMM B2 uncorrectable errors", "8", str(32 * 2**30), "2")  # fmt: skip
    assert old["nic_max_speed_mbps"] == "1000" and old["commissioned_at"]


def test_what_commissioning_stores_is_what_the_pages_show_and_filter_on(scene):
    """inventory/facts.py's versions, changes and columns, read by the hardware page and the list's filters."""
    machine = scene.idle
    nics = [{**FULL_FACTS["nics"][0], "mac": machine.pxe_nic.mac}]
    first = {**FULL_FACTS, "nics": nics, "lldp_listened_s": 30}
    failing = [{**FULL_FACTS["disks"][0], "smart": {"available": True, "passed": False, "detail": "media errors"}}]
    with transaction.atomic():
        facts.store_version(machine, first, "commissioning (install 1)", Actor.system("test"))
        facts.store_version(machine, {**first, "disks": failing}, "commissioning (install 2)", Actor.system("test"))
    client = client_for("technician")
    html = client.get(reverse("inventory:machine-hardware", args=[machine.hostname])).content.decode()
    assert "<code>disks[S64HNE0T123456].smart.passed</code>" in html and "<code>false</code>" in html
    assert "<code>disks[ZL2ABCDE].serial</code>" in html  # the HDD is gone
    assert "commissioning (install 2)" in html and "FAILED" in html
    assert listed(client, disk_type="nvme", nic_speed_min="25000", switch="leaf-r07", memory_gib_min="512") == [
        machine.hostname
    ]
    assert "leaf-r07-a <code>Ethernet12/1</code>" in page(client, machine)
