"""A lab machine powered by the real IPMI driver boots what its per-MAC config says, and nothing else."""

from __future__ import annotations

import json
import os
import time

import pytest

from provisioner import pxe
from provisioner.bmc import BootDevice, PowerState
from provisioner.lab.bmc import LoopbackBmc
from provisioner.lab.machine import LabMachine
from tests.integration.lab.conftest import (
    AGENT_TOKEN,
    BMC_PASSWORD,
    BMC_USER,
    CALLBACK_TOKEN,
    MACS,
    TOKEN,
    arm,
    driver,
    render_answers,
)


def test_no_per_mac_config_boots_the_local_disk_and_starts_nothing(make_machine, stub):
    machine = make_machine()
    bmc = driver(machine)
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()

    machine.wait_for("halted")
    assert bmc.power_state() is PowerState.ON
    assert "local-boot" in machine.phases()
    assert "agent-started" not in machine.phases() and "installer-started" not in machine.phases()
    assert stub.requests == []
    log = machine.log_path.read_text()
    assert "read pxelinux.cfg/default" in log and "not found: pxelinux.cfg/01-52-54-00-1a-00-01" in log
    assert machine.bmc.boots == [BootDevice.PXE]


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_image_config_starts_the_real_agent_which_registers_with_the_token_from_the_file(
    make_machine, stub, tftp, firmware
):
    arm(tftp, "image", stub.url)
    machine = make_machine(firmware)
    bmc = driver(machine)
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()

    machine.wait_for("agent-exited", timeout=15)
    assert machine.agent_exit_codes == [0]  # tasks/next said "finished"
    register = next(r for r in stub.requests if r[1] == "/api/agent/v1/register")
    assert register[2]["Authorization"] == f"Bearer {TOKEN}"
    # Every later call carries the agent token the registration answer handed over.
    later = {r[2]["Authorization"] for r in stub.requests if r[1] != "/api/agent/v1/register"}
    assert later == {f"Bearer {AGENT_TOKEN}"}
    facts = json.loads(register[3])["facts"]
    assert [n["mac"] for n in facts["nics"]] == MACS
    assert [d["path"] for d in facts["disks"]] == ["/dev/sda"]
    assert stub.paths()[:2] == ["/api/agent/v1/register", "/api/agent/v1/tasks/next?wait=25"]
    loader = "pxelinux.cfg/01-" if firmware == "bios" else "grub/grub.cfg-01-"
    log = machine.log_path.read_text()
    assert f"read {loader}52-54-00-1a-00-01" in log
    assert "BOOTIF=01-52-54-00-1a-00-01" in log and "provisioner.token=***" in log
    for token in (TOKEN, AGENT_TOKEN, CALLBACK_TOKEN):
        assert token not in log and token not in (machine.workdir / "agent.log").read_text()
    assert all(TOKEN not in arg for argv in machine.agent_commands for arg in argv)


def test_power_off_stops_the_agent(make_machine, stub, tftp):
    stub.hold_polls = True
    arm(tftp, "image", stub.url)
    machine = make_machine()
    bmc = driver(machine)
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()
    stub.wait_for(lambda s: "/api/agent/v1/register" in s.paths())
    pid = machine.agent_pid
    assert pid is not None and machine.agent_running

    bmc.power_off()
    machine.wait_for("power-off")
    assert "agent-stopped" in machine.phases()
    assert not machine.agent_running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (machine.workdir / "ram").exists()  # the memory OS (and the token in its cmdline) is gone
    polls = len(stub.paths())
    time.sleep(0.6)
    assert len(stub.paths()) == polls


@pytest.mark.parametrize(
    "profile, first, callbacks",
    [
        ("debian-12-preseed", ["GET /i/{t}/preseed.cfg"], ["started", "progress", "finished"]),
        ("rocky-9-kickstart", ["GET /i/{t}/ks.cfg"], ["started", "finished"]),
        (
            "ubuntu-24.04-autoinstall",
            ["GET /i/{t}/meta-data", "GET /i/{t}/user-data", "GET /i/{t}/vendor-data"],
            ["started"] + ["progress"] * 6 + ["finished"],
        ),
    ],
)
def test_installer_config_fetches_the_file_and_calls_back_in_order_then_boots_the_disk(
    make_machine, stub, tftp, profile, first, callbacks
):
    render_answers(stub, profile)
    method = profile.split("-")[-1]
    arm(tftp, method, stub.url)
    machine = make_machine()
    bmc = driver(machine)
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()

    machine.wait_for("disk-boot", timeout=15)
    seen = [f"{m} {p}" for m, p, _, _ in stub.requests]
    fetches = [f.format(t=TOKEN) for f in first]
    assert seen == fetches + [f"POST /i/{CALLBACK_TOKEN}/events/{kind}" for kind in callbacks]
    assert machine.installed_os() == method
    # The installed system names its distribution, as a technician's `cat /etc/os-release` shows.
    os_id = {"preseed": "debian", "kickstart": "rocky", "autoinstall": "ubuntu"}[method]
    assert f"ID={os_id}\n" in (machine.target / "etc" / "os-release").read_text()
    # The one-time PXE was used by the power-on; the installer's own reboot boots the firmware's default.
    assert machine.bmc.boots == [BootDevice.PXE, BootDevice.DEFAULT]
    assert machine.first_boot_calls == 0
    phases = machine.phases()
    assert phases.index("os-installed") < phases.index("host-reboot") < phases.index("disk-boot")
    if method == "autoinstall":
        progress = [json.loads(b) for _, p, _, b in stub.requests if p.endswith("/events/progress")]
        assert {e["event_type"] for e in progress} == {"start", "finish"}
        assert all(r[2]["Content-Type"] == "application/json" for r in stub.requests if r[1].endswith("progress"))
    else:
        started = next(b for _, p, _, b in stub.requests if p.endswith("/events/started"))
        assert started.startswith(b"step=")


def test_image_install_then_disk_boot_calls_the_first_boot_url_once(make_machine, stub, tftp, demo_image):
    stub.tasks = [
        {"id": "t1", "kind": "wipe_disks", "params": {"disks": ["/dev/sda"]}},
        {
            "id": "t2",
            "kind": "write_image",
            "params": {
                "url": f"{stub.url}/images/{demo_image.path.name}",
                "sha256": demo_image.sha256,
                "disk": "/dev/sda",
                "compression": "auto",
            },
        },  # fmt: skip
        {"id": "t3", "kind": "first_boot_callback", "params": {}},
    ]
    arm(tftp, "image", stub.url)
    machine = make_machine()
    bmc = driver(machine)
    started = time.monotonic()
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()
    machine.wait_for("agent-exited", timeout=20)
    assert machine.agent_exit_codes == [0]
    results = {p: json.loads(b) for m, p, _, b in stub.requests if p.endswith("/result")}
    assert all(r["ok"] for r in results.values()), results
    assert machine.installed_os() == "image"

    # What the engine does after the agent's tasks.
    pxe.remove(tftp, MACS[0])
    bmc.set_boot_device(BootDevice.DISK, once=False)
    bmc.power_cycle()
    machine.wait_for("first-boot-callback", timeout=10)
    elapsed = time.monotonic() - started
    finished = [p for m, p, _, _ in stub.requests if "/events/" in p]
    assert finished == [f"/i/{CALLBACK_TOKEN}/events/finished"]
    assert not (machine.target / "etc/provisioner/first-boot").exists()
    assert "agent-stopped" not in machine.phases()  # it had exited on its own before the power cycle

    bmc.power_cycle()  # a second boot: the unit disabled itself
    machine.wait_for("disk-boot", count=2)
    time.sleep(0.3)
    assert machine.first_boot_calls == 1
    assert len([p for p in stub.paths() if p.endswith("/events/finished")]) == 1
    assert elapsed < 15


def test_a_machine_that_never_boots_does_nothing(make_machine, stub, tftp):
    arm(tftp, "image", stub.url)
    machine = make_machine(never_boots=True)
    bmc = driver(machine)
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()
    machine.wait_for("halted")
    assert bmc.power_state() is PowerState.ON
    assert "tftp" not in machine.phases() and stub.requests == []


def test_disk_boot_without_an_os_halts(make_machine, stub, tftp):
    arm(tftp, "image", stub.url)
    machine = make_machine()
    bmc = driver(machine)
    bmc.set_boot_device(BootDevice.DISK, once=True)
    bmc.power_on()
    machine.wait_for("halted")
    assert "tftp" not in machine.phases() and stub.requests == []


@pytest.mark.parametrize(
    "profile, callbacks",
    [("rocky-9-kickstart", ["started", "failed"]), ("debian-12-preseed", ["started"])],
)
def test_an_installer_that_cannot_use_the_disk_reports_only_what_its_file_says(
    make_machine, stub, tftp, profile, callbacks
):
    render_answers(stub, profile)
    arm(tftp, profile.split("-")[-1], stub.url)
    machine = make_machine(disk_bytes=1 << 20)
    bmc = driver(machine)
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()
    stub.wait_for(lambda s: len([p for p in s.paths("POST")]) >= len(callbacks))
    time.sleep(0.3)
    posts = [p.rsplit("/", 1)[-1] for p in stub.paths("POST")]
    assert posts == callbacks
    assert machine.installed_os() is None
    assert "host-reboot" not in machine.phases()  # it waits at its error screen


def test_an_agent_left_by_a_killed_lab_is_stopped_by_the_next_start(make_machine, stub, tftp):
    stub.hold_polls = True
    arm(tftp, "image", stub.url)
    first = make_machine()
    bmc = driver(first)
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()
    stub.wait_for(lambda s: "/api/agent/v1/register" in s.paths())
    pid = first.agent_pid

    # The same machine directory, as a lab restarted after a SIGKILL finds it.
    second = LabMachine("lab01", MACS, first.workdir, tftp, bmc=LoopbackBmc(BMC_USER, BMC_PASSWORD)).start()
    try:
        assert "agent-stopped" in second.phases()
        first.wait_for("agent-exited")
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        second.stop()


def test_a_silent_installer_calls_started_then_nothing_until_the_power_is_cut(make_machine, stub, tftp):
    render_answers(stub, "debian-12-preseed")
    arm(tftp, "preseed", stub.url)
    machine = make_machine(installer_silent=True)
    bmc = driver(machine)
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()
    stub.wait_for(lambda s: s.paths("POST"))
    time.sleep(1.0)  # more than the installer takes (install_s 0.3): a finishing one would have called back
    assert [p.rsplit("/", 1)[-1] for p in stub.paths("POST")] == ["started"]
    assert machine.installed_os() is None and "host-reboot" not in machine.phases()

    bmc.power_off()
    machine.wait_for("installer-stopped")
    assert [p.rsplit("/", 1)[-1] for p in stub.paths("POST")] == ["started"]
