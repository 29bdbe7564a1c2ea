"""The machine lifecycle on the command line: ``manage.py machine`` shows a machine's status and what it can do,
and takes an action (audited like the pages'); ``manage.py machines`` lists with the hardware filters."""

from __future__ import annotations

import getpass
import io
import json

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from installs.models import Install
from inventory.models import Machine
from tests.conftest import make_machine
from tests.integration.ui.lifecycle_data import commissioned, put, step_args

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_machine_shows_status_reason_hardware_and_the_actions_allowed(scene):
    commissioned(scene.idle, cores=32, memory_gib=256, ssd=2, nic_mbps=25000, cpu="Intel(R) Xeon(R) Gold 6338")
    put(scene.idle, "broken", "BMC reports PSU 1 failed")
    out = run("machine", scene.idle.hostname)
    lines = out.splitlines()
    assert lines[0].startswith("idle-01  broken  since ")
    assert "reason:    BMC reports PSU 1 failed" in lines
    assert "hardware:  32 cores · 256 GiB · 2 disks (2 SSD) · 25 Gb/s  (Intel(R) Xeon(R) Gold 6338)" in lines
    assert lines[-1] == "actions:   commission, test, mark-fixed, enter-maintenance"
    put(scene.busy, "releasing")  # its install runs
    out = run("machine", scene.busy.hostname)
    assert "hardware:  not commissioned yet" in out and out.endswith("actions:   none from releasing\n")
    with pytest.raises(CommandError, match="No machine named nope"):
        run("machine", "nope")


def test_a_mark_from_the_command_line_is_audited_with_its_reason(scene):
    put(scene.idle, "ready")
    with pytest.raises(CommandError, match="--reason: Mark broken needs a reason"):
        run("machine", scene.idle.hostname, "mark-broken")
    assert run("machine", scene.idle.hostname, "mark-broken", "--reason", "fan 3 at 0 rpm") == "idle-01 is broken.\n"
    entry = AuditEntry.objects.get(action="machine.lifecycle")
    assert entry.actor_kind == "system" and entry.actor_label == f"cli:{getpass.getuser()}"
    assert entry.details == {"from": "ready", "to": "broken", "reason": "fan 3 at 0 rpm"}


def test_a_refusal_is_a_command_error_in_words(scene):
    put(scene.busy, "deploying")
    with pytest.raises(CommandError, match="busy-01 is deploying: enter maintenance is not possible from there"):
        run("machine", scene.busy.hostname, "enter-maintenance", "--reason", "x")
    with pytest.raises(CommandError, match="--cpu-burn-s: only test takes a CPU burn, not commission"):
        run("machine", scene.busy.hostname, "commission", "--cpu-burn-s", "60")
    assert Machine.objects.get(pk=scene.busy.pk).status == "deploying"
    with pytest.raises(CommandError, match="Refused:\n  idle-01: site lab has no memory OS profile"):
        run("machine", scene.idle.hostname, "commission")
    assert not Install.objects.filter(purpose="commission").exists()


def test_deploy_needs_yes_when_nobody_can_type_the_hostname(scene):
    put(scene.idle, "ready")
    with pytest.raises(CommandError, match="Deploy idle-01 cannot be undone: add --yes"):
        run("machine", scene.idle.hostname, "deploy", "--profile", scene.profile.name)
    assert not Install.objects.filter(machine=scene.idle, state="queued").exists()
    out = run("machine", scene.idle.hostname, "deploy", "--profile", scene.profile.name, "--yes")
    install = Install.objects.get(machine=scene.idle, state="queued")
    assert out == f"idle-01: deploy requested as batch {install.batch_id}, install {install.pk}.\n"


def test_test_runs_with_its_cpu_burn_and_expected_nic_speed(scene, memory_os):
    put(scene.idle, "ready")
    out = run("machine", scene.idle.hostname, "test", "--cpu-burn-s", "120", "--nic-speed-mbps", "10000")
    install = Install.objects.get(machine=scene.idle, purpose="test")
    assert out == f"idle-01: test hardware requested as batch {install.batch_id}, install {install.pk}.\n"
    assert step_args(install, "stock-cpu-burn") == ["120"] and step_args(install, "stock-nic-speed") == ["10000"]
    out = run("machine", scene.idle.hostname)
    assert f"install:   {install.pk} (test, queued)" in out
    assert out.endswith("actions:   mark-broken, enter-maintenance\n")


@pytest.fixture
def fleet(scene):
    rack = scene.rack
    big = commissioned(make_machine(rack, hostname="big-01", position_u=5), cores=128, memory_gib=1024, nvme=4,
                       nic_mbps=100000, cpu="AMD EPYC 9654", switch="leaf-r01-a", port="Ethernet1/1")  # fmt: skip
    small = commissioned(make_machine(rack, hostname="small-01", position_u=6), cores=8, memory_gib=32, hdd=2,
                         nic_mbps=1000, switch="leaf-r01-b", port="Ethernet1/7")  # fmt: skip
    put(small, "broken", "disk 2 clicks")
    return big, small


def test_machines_lists_with_the_hardware_filters(fleet):
    out = run("machines", "--memory-gib-min", "64", "--disk-type", "nvme", "--nic-speed-min", "25000")
    lines = out.splitlines()
    assert lines[0].split() == ["HOSTNAME", "SITE/RACK", "STATUS", "TAGS", "HARDWARE", "CPU", "REASON"]
    assert len(lines) == 2 and lines[1].startswith("big-01 ")
    assert "128 cores · 1024 GiB · 4 disks (4 NVMe) · 100 Gb/s" in lines[1] and "AMD EPYC 9654" in lines[1]
    out = run("machines", "--switch", "leaf-r01", "--switch-port", "Ethernet1/7", "--status", "broken")
    assert out.splitlines()[1].startswith("small-01 ") and "disk 2 clicks" in out
    assert run("machines", "--cpu-model", "power9") == "No machine matches.\n"
    hostnames = [line.split()[0] for line in run("machines").splitlines()[1:]]
    assert hostnames == ["big-01", "busy-01", "idle-01", "small-01"]


def test_machines_json_for_scripts(fleet):
    rows = json.loads(run("machines", "--cores-min", "100", "--json"))
    assert [r["hostname"] for r in rows] == ["big-01"]
    assert rows[0]["hardware"]["memory_bytes"] == 1024 * 2**30 and rows[0]["hardware"]["nvme_count"] == 4
    assert rows[0]["status"] == "new" and rows[0]["site"] == "lab"
    assert json.loads(run("machines", "--status", "broken", "--json"))[0]["status_reason"] == "disk 2 clicks"


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--memory-gib-min", "64G", "--memory-gib-min: “64G” is not an amount of memory"),
        ("--cores-min", "many", "--cores-min: “many” is not a whole number"),
        ("--status", "installing", "--status: “installing” is not a status"),
    ],
)
def test_machines_refuses_a_filter_that_means_nothing(fleet, option, value, words):
    with pytest.raises(CommandError, match=words):
        run("machines", option, value)
