"""The simulated datacentre as `make run` uses it: a lab process with real IPMI BMCs and machines that
PXE-boot, loaded into inventory by load_demo, installed by a real worker process through the live API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from django.core.management import call_command

from access import terminal
from audit.service import Actor
from installs.batches import request_installs
from installs.models import Install, InstallState
from inventory import power
from inventory.models import Machine, OSProfile
from tests.integration.ui.conftest import user_with_role


def test_lab_machines_install_end_to_end(running_lab, site_worker, capsys, settings, tmp_path):
    settings.SSH_RECORDING_DIR = tmp_path / "ssh"
    call_command("load_demo", "--lab-inventory", str(running_lab))
    assert "Lab site 'lab'" in capsys.readouterr().out
    machines = list(Machine.objects.filter(rack__site__slug="lab").select_related("bmc").order_by("hostname"))
    assert machines and all(m.bmc.driver == "ipmi" for m in machines)
    healthy = [m for m in machines if "faults" not in m.hostname][:3]
    # The BMCs are real IPMI over UDP: read one's power state as the dashboard would.
    assert power.perform(healthy[0], "status", Actor.system("test")).endswith("power is off")

    call_command("load_demo_workflows")
    image = OSProfile.objects.get(name="lab-demo-image")
    preseed = OSProfile.objects.get(name="debian-12-preseed")
    scripted = OSProfile.objects.get(name="lab-demo-scripted")
    installs = [
        request_installs([healthy[0].pk], image, Actor.system("test")).installs.get(),
        request_installs([healthy[1].pk], preseed, Actor.system("test")).installs.get(),
        request_installs([healthy[2].pk], scripted, Actor.system("test")).installs.get(),
    ]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = [Install.objects.get(pk=i.pk).state for i in installs]
        if all(s in (InstallState.SUCCEEDED, InstallState.FAILED, InstallState.CANCELLED) for s in states):
            break
        time.sleep(0.5)
    details = [(i.machine.hostname, i.state, i.failure_reason, i.failure_message) for i in Install.objects.all()]
    assert states == [InstallState.SUCCEEDED] * 3, details
    # The workflow's survey stage ran its two agent tasks at once, and its scripts' output is in the log.
    survey = installs[2].steps.filter(stage_name="survey")
    assert survey.count() == 2 and all(s.parallel and s.state == "succeeded" for s in survey)
    log = "\n".join(installs[2].events.filter(kind="log").values_list("message", flat=True))
    for line in ("disk report for", "pre-install: ok", "post-install: ok"):
        assert line in log, log[-2000:]
    # Each installed machine answered the SSH check through the lab's jump host, with the facts it really has.
    for install in installs:
        verify = install.steps.get(kind="verify_ssh")
        checked = verify.result.get("checks", {})
        assert verify.state == "succeeded" and {"hostname", "nic"} <= set(checked) and all(checked.values()), (
            install.machine.hostname, verify.state, verify.message, verify.result
        )  # fmt: skip
    # The site's CA reached every installed system, by the agent's ssh_keys task (image) and by the answer file
    # (preseed): a session's certificate alone logs in, as it would in the browser's terminal.
    technician = user_with_role("technician")
    for install in installs[:2]:
        machine = Machine.objects.get(pk=install.machine_id)
        assert _session_hostname(technician, machine) == machine.hostname.split(".")[0]
    assert healthy[0].pxe_nic.ip.startswith("127.77.") and healthy[0].pxe_nic.prefix_len == 8
    tftp = Path(Machine.objects.get(pk=healthy[0].pk).rack.site.tftp_root)
    assert not list(tftp.rglob("*01-52-*"))  # no per-MAC config left behind


def _session_hostname(user, machine) -> str:
    """What `hostname` answers in a recorded session opened on the machine with a per-session certificate."""
    session = terminal.open_session(user, machine, reason="lab check", client="cli")
    seen = bytearray()

    async def run():
        term = terminal.Terminal(session.pk, on_output=seen.extend, on_end=lambda s: None)
        await term.start(80, 24)
        await term.write(b"hostname\r")
        deadline = time.monotonic() + 10
        while b"hostname\r\n" not in seen or not bytes(seen).split(b"hostname\r\n", 1)[1].count(b"\r\n"):
            assert time.monotonic() < deadline, bytes(seen)
            await asyncio.sleep(0.05)
        await term.close()

    asyncio.run(run())
    return bytes(seen).split(b"hostname\r\n", 1)[1].split(b"\r\n")[0].decode().strip()


def _wait_ended(install, budget_s: float = 120) -> Install:
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        install.refresh_from_db()
        if install.state in (InstallState.SUCCEEDED, InstallState.FAILED, InstallState.CANCELLED):
            return install
        time.sleep(0.5)
    raise AssertionError(f"{install} still {install.state} after {budget_s} s")


def test_a_lab_machine_is_commissioned_tested_and_released_by_its_real_agent(running_lab, site_worker):
    """The lifecycle's operations on the simulated datacentre: the real agent in its sandbox reports the facts the
    lab describes, runs the stock test scripts, and erases the machine's disk images."""
    from installs import operations
    from inventory.models import MachineFacts, MachineStatus

    call_command("load_demo", "--lab-inventory", str(running_lab))
    call_command("load_demo_workflows")
    machine = next(m for m in Machine.objects.filter(rack__site__slug="lab").order_by("hostname")
                   if "faults" not in m.hostname)  # fmt: skip
    site = machine.rack.site
    site.memory_os = OSProfile.objects.get(name="lab-demo-image")
    site.save()
    actor = Actor.system("test")

    commission = _wait_ended(operations.request([machine.pk], "commission", actor).installs.get())
    assert commission.state == InstallState.SUCCEEDED, commission.failure_message
    machine.refresh_from_db()
    assert machine.status == MachineStatus.READY
    facts = MachineFacts.objects.get(machine=machine, version=1).facts
    assert facts["cpu"]["model"] == "Lab Xeon E-2388G @ 3.20GHz" and len(facts["memory_modules"]) == 4
    assert (machine.memory_bytes, machine.cpu_cores, machine.disk_count) == (32 * 2**30, 8, 1)
    nic = machine.pxe_nic
    assert (nic.switch_name, nic.switch_port, nic.lldp_seen, nic.driver) == (
        f"leaf-{machine.rack.name}", f"Ethernet{machine.position_u}", True, "ixgbe")  # fmt: skip

    test = _wait_ended(
        operations.request(
            [machine.pk], "test", actor, options={"cpu_burn_s": 1, "nic_speed_mbps": 1000}
        ).installs.get()
    )
    assert test.state == InstallState.SUCCEEDED, test.failure_message
    assert list(test.steps.filter(task="run_script").values_list("state", flat=True)) == ["succeeded"] * 5
    machine.refresh_from_db()
    assert machine.status == MachineStatus.READY

    # Something on the disk to erase: the start, the middle and the end.
    disk = Path(running_lab).parent / "machines" / machine.hostname / "disks" / "sda.img"
    size = disk.stat().st_size
    with open(disk, "r+b") as f:
        for offset in (0, size // 2, size - 4096):
            f.seek(offset)
            f.write(b"\xa5" * 4096)
    Machine.objects.filter(pk=machine.pk).update(status=MachineStatus.DEPLOYED)
    release = _wait_ended(operations.request([machine.pk], "release", actor).installs.get())
    assert release.state == InstallState.SUCCEEDED, release.failure_message
    with open(disk, "rb") as f:
        for offset in (0, size // 2, size - 4096):
            f.seek(offset)
            assert f.read(4096) == bytes(4096), f"{disk} still holds data at {offset}"
    log = release.events.filter(kind="log", step__task="erase_disks").get().message
    assert log.startswith("Erased: /dev/sda (serial ") and "verified" in log
    machine.refresh_from_db()
    assert machine.status == MachineStatus.READY
