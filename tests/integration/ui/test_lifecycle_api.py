"""The machine lifecycle through the REST API: a machine's status, reason, hardware and allowed actions; the
hardware filters of the list (a value that means nothing is a 400 naming it); an action taken (202 for an
operation, 200 for a status change, 409 with the sentence when refused, 400 for what cannot be an action); and
the facts, version by version."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEntry
from installs.models import Install
from inventory.models import Machine
from tests.conftest import make_machine
from tests.integration.ui.lifecycle_data import FULL_FACTS, commissioned, facts_version, put, step_args
from tests.integration.ui.test_rest import token_client

pytestmark = pytest.mark.django_db


def act(client, hostname: str, **body):
    return client.post(f"/api/v1/machines/{hostname}/lifecycle", json.dumps(body), content_type="application/json")


@pytest.fixture
def technician():
    return token_client("technician")[0]


def test_the_machine_detail_has_status_reason_hardware_and_actions(scene):
    commissioned(scene.idle, cores=64, memory_gib=512, nvme=2, hdd=1, nic_mbps=25000, cpu="AMD EPYC 7543")
    put(scene.idle, "broken", "DIMM A1 fails memtest")
    client, _ = token_client("viewer")
    data = client.get(f"/api/v1/machines/{scene.idle.hostname}").json()
    assert (data["status"], data["status_reason"]) == ("broken", "DIMM A1 fails memtest")
    assert data["status_changed_at"]
    assert data["actions"] == ["commission", "test", "mark-fixed", "enter-maintenance"]
    hw = data["hardware"]
    assert (hw["cpu_model"], hw["cpu_cores"], hw["memory_bytes"]) == ("AMD EPYC 7543", 64, 512 * 2**30)
    assert (hw["disk_count"], hw["nvme_count"], hw["hdd_count"], hw["ssd_count"]) == (3, 2, 1, 0)
    assert hw["nic_max_speed_mbps"] == 25000 and hw["commissioned_at"]
    listed = client.get("/api/v1/machines", {"q": scene.busy.hostname}).json()["results"][0]
    assert listed["hardware"]["cpu_cores"] is None and listed["status"] == "new"


def test_the_list_filters_on_hardware_and_status(scene):
    rack = scene.rack
    big = commissioned(make_machine(rack, hostname="big-01", position_u=5), cores=128, memory_gib=1024, nvme=4,
                       nic_mbps=100000, cpu="AMD EPYC 9654", switch="leaf-r01-a", port="Ethernet1/1")  # fmt: skip
    small = commissioned(make_machine(rack, hostname="small-01", position_u=6), cores=8, memory_gib=32, hdd=2,
                         nic_mbps=1000, switch="leaf-r01-b", port="Ethernet1/1")  # fmt: skip
    put(small, "ready")
    client, _ = token_client("viewer")

    def hosts(**params):
        response = client.get("/api/v1/machines", params)
        assert response.status_code == 200, response.content
        return sorted(m["hostname"] for m in response.json()["results"])

    assert hosts(memory_gib_min="64", cores_min="64", cpu_model="epyc") == [big.hostname]
    assert hosts(disks_min="2", disk_type="hdd") == [small.hostname]
    assert hosts(nic_speed_min="25000") == [big.hostname]
    assert hosts(switch="leaf-r01", switch_port="Ethernet1/1") == [big.hostname, small.hostname]
    assert hosts(switch="leaf-r01-b") == [small.hostname]
    assert hosts(status="ready") == [small.hostname]
    assert hosts(status="ready", disk_type="nvme") == []


@pytest.mark.parametrize(
    "params, field, words",
    [
        ({"memory_gib_min": "64GB"}, "memory_gib_min", "is not an amount of memory"),
        ({"cores_min": "1.5"}, "cores_min", "is not a whole number from 0 to 100,000"),
        ({"disks_min": "-2"}, "disks_min", "is not a whole number"),
        ({"nic_speed_min": "10G"}, "nic_speed_min", "Mb/s"),
        ({"status": "installing"}, "status", "is not a status; the statuses are new, commissioning"),
        ({"disk_type": "tape"}, "disk_type", ""),
        ({"memory_gib_min": "9" * 25}, "memory_gib_min", ""),
    ],
)
def test_a_filter_that_means_nothing_is_a_400_naming_it(scene, params, field, words):
    client, _ = token_client("viewer")
    response = client.get("/api/v1/machines", params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["field"] == field and words in problem["detail"], problem


def test_a_status_change_is_200_audited_with_its_reason(scene, technician):
    machine = put(scene.idle, "ready")
    response = act(technician, machine.hostname, action="enter-maintenance", reason="rack move on Tuesday")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["status_reason"]) == ("maintenance", "rack move on Tuesday")
    assert body["actions"] == ["commission", "test", "mark-broken", "exit-maintenance"]
    entry = AuditEntry.objects.get(action="machine.lifecycle")
    assert entry.actor_label == "technician-api"
    assert entry.details == {"from": "ready", "to": "maintenance", "reason": "rack move on Tuesday"}


def test_an_action_the_table_refuses_is_a_409_with_the_sentence(scene, technician, memory_os):
    machine = put(scene.busy, "deploying")  # its install is running
    response = act(technician, machine.hostname, action="mark-broken", reason="smoke")
    assert response.status_code == 409
    problem = response.json()
    assert problem["problems"] == ["busy-01 is deploying: mark broken is not possible from there. It can: nothing."]
    assert Machine.objects.get(pk=machine.pk).status == "deploying"
    machine = put(scene.idle, "maintenance", "rack move")
    response = act(technician, machine.hostname, action="release")
    assert response.status_code == 409
    assert response.json()["problems"] == [
        "idle-01 is maintenance: release is not possible from there. "
        "It can: commission, test, mark-broken, exit-maintenance."
    ]
    assert not AuditEntry.objects.filter(action="machine.lifecycle").exists()
    assert not Install.objects.filter(purpose="release").exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"action": "reboot"}, "action"),
        ({"action": "mark-broken"}, "reason"),
        ({"action": "mark-broken", "reason": "  "}, "reason"),
        ({"action": "mark-broken", "reason": "x" * 501}, "reason"),
        ({"action": "release", "profile": "debian-12-preseed"}, "profile"),
        ({"action": "release", "reason": "done with it"}, "reason"),
        ({"action": "deploy"}, "profile"),
        ({"action": "deploy", "profile": "no-such-profile"}, "profile"),
        ({"action": "deploy", "profile": "debian-12-preseed", "boot": "usb"}, "boot"),
        ({"action": "test", "cpu_burn_s": -1}, "cpu_burn_s"),
        ({"action": "test", "cpu_burn_s": "600"}, "cpu_burn_s"),
        ({"action": "test", "cpu_burn_s": 7 * 86400 + 1}, "cpu_burn_s"),
        ({"action": "test", "nic_speed_mbps": "fast"}, "nic_speed_mbps"),
        ({"action": "test", "workflow": "no-such-workflow"}, "workflow"),
        ({"action": "test", "workflow": "scene-flow"}, "workflow"),
        ({"action": "commission", "cpu_burn_s": 60}, "cpu_burn_s"),
        ({"action": "release", "nic_speed_mbps": 1000}, "nic_speed_mbps"),
    ],
)
def test_what_cannot_be_an_action_is_a_400_naming_the_field(scene, technician, body, field):
    machine = put(scene.idle, "ready")
    before = (Install.objects.count(), AuditEntry.objects.count())
    response = act(technician, machine.hostname, **body)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert (Install.objects.count(), AuditEntry.objects.count()) == before
    assert Machine.objects.get(pk=machine.pk).status == "ready"


def test_deploy_is_202_with_the_batch_and_its_install(scene, technician):
    machine = put(scene.idle, "ready")
    response = act(technician, machine.hostname, action="deploy", profile=scene.profile.name, boot="virtual-media")
    assert response.status_code == 202, response.content
    body = response.json()
    install = Install.objects.get(machine=machine, state="queued")
    assert body == {"action": "deploy", "machine": "idle-01", "batch": install.batch_id, "installs": [install.pk]}
    assert install.plan.flow.name == "stock-installer-virtual-media"


def test_deploy_on_a_protected_machine_is_409_protected(scene, technician):
    Machine.objects.filter(pk=scene.idle.pk).update(protected=True)
    response = act(technician, scene.idle.hostname, action="deploy", profile=scene.profile.name)
    assert response.status_code == 409
    assert any("Protected, install refused: idle-01" in p for p in response.json()["problems"])
    assert AuditEntry.objects.filter(action="install.refused").exists()  # the install request audits its refusal


def test_commission_test_and_release_are_202_with_their_install(scene, technician, memory_os):
    machine = put(scene.idle, "ready")
    response = act(technician, machine.hostname, action="test", cpu_burn_s=900)
    assert response.status_code == 202, response.content
    install = Install.objects.get(machine=machine, purpose="test")
    assert response.json() == {"action": "test", "machine": "idle-01", "batch": install.batch_id,
                               "installs": [install.pk]}  # fmt: skip
    assert install.plan.flow.name == "stock-test" and step_args(install, "stock-cpu-burn") == ["900"]
    assert Machine.objects.get(pk=machine.pk).status == "testing"
    detail = technician.get(f"/api/v1/machines/{machine.hostname}").json()
    assert detail["actions"] == ["mark-broken", "enter-maintenance"]  # an install holds it
    Install.objects.filter(pk=install.pk).update(state="failed")  # ended without settling the status: stale
    detail = technician.get(f"/api/v1/machines/{machine.hostname}").json()
    assert detail["actions"] == ["commission", "test", "deploy", "release", "mark-broken", "enter-maintenance"]
    response = act(technician, machine.hostname, action="commission")
    assert response.status_code == 202, response.content
    assert Machine.objects.get(pk=machine.pk).status == "commissioning"
    Install.objects.filter(machine=machine).update(state="succeeded")
    put(machine, "deployed")
    assert act(technician, machine.hostname, action="release").status_code == 202
    purposes = Install.objects.filter(machine=machine).exclude(pk=scene.failed.pk).values_list("purpose", flat=True)
    assert sorted(purposes) == ["commission", "release", "test"]


def test_a_viewer_takes_no_action_and_an_unknown_machine_is_404(scene):
    viewer, _ = token_client("viewer")
    assert act(viewer, scene.idle.hostname, action="mark-broken", reason="x").status_code == 403
    technician, _ = token_client("technician")
    assert act(technician, "nope-99", action="mark-broken", reason="x").status_code == 404


def test_facts_versions_and_one_version(scene):
    client, _ = token_client("viewer")
    assert client.get(f"/api/v1/machines/{scene.idle.hostname}/facts").json()["results"] == []
    facts_version(scene.idle, 1, {"cpus": 2})
    facts_version(scene.idle, 2, FULL_FACTS, changes=[{"path": "cpus", "before": 2, "after": 64}])
    versions = client.get(f"/api/v1/machines/{scene.idle.hostname}/facts").json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["changes"] == [{"path": "cpus", "before": 2, "after": 64}]
    assert versions[0]["source"] == "commissioning (install 102)" and "facts" not in versions[0]
    one = client.get(f"/api/v1/machines/{scene.idle.hostname}/facts/2").json()
    assert one["facts"] == FULL_FACTS and one["version"] == 2
    missing = client.get(f"/api/v1/machines/{scene.idle.hostname}/facts/3")
    assert missing.status_code == 404 and "has no facts version 3" in missing.json()["detail"]
    assert client.get(f"/api/v1/machines/{scene.idle.hostname}/facts/0").status_code == 400
    typo = client.get(f"/api/v1/machines/{scene.idle.hostname}/facts", {"verison": "1"})
    assert typo.status_code == 400 and typo.json()["field"] == "verison"
