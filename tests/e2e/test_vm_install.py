"""The whole chain on a virtual machine: command -> RQ worker -> pyghmi -> ipmi_sim -> QEMU -> PXE (pxelinux or
GRUB) -> memory OS -> agent -> dashboard -> disk boot -> first-boot callback -> succeeded.

Each phase is logged with its time (see var/e2e/<firmware>/timeline.log), from the serial console, the BMC's
chassis events and the install's own events, so a failure says where the chain broke.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Timeline

# The whole test, both firmwares, must fit in 15 minutes of a 2-core machine emulating x86 in software.
INSTALL_BUDGET_S = 330
DISK_BOOT_BUDGET_S = 150

SERIAL_PHASES = [
    (re.compile(r"iPXE \d|iPXE initiali"), "firmware: iPXE PXE ROM"),
    (re.compile(r"Start PXE over IPv4"), "firmware: UEFI PXE"),
    (re.compile(r"Station IP address is|DHCP \(net0.*ok|Configuring \(net0"), "DHCP (firmware)"),
    (re.compile(r"PXELINUX \d"), "TFTP: pxelinux.0 running"),
    (re.compile(r"Welcome to GRUB"), "TFTP: GRUB running"),
    (re.compile(r"Booting `"), "loader entry"),
    (re.compile(r"BdsDxe: starting"), "firmware boot option"),
    (re.compile(r"Linux version"), "kernel started"),
    (re.compile(r"provisioner-memory-os: stage 1"), "memory OS: stage 1"),
    (re.compile(r"provisioner-memory-os: root unpacked"), "memory OS: root in tmpfs"),
    (re.compile(r"provisioner-memory-os: (BOOTIF|no NIC|no BOOTIF)"), "memory OS: NIC"),
    (re.compile(r"provisioner-memory-os: DHCP"), "memory OS: DHCP"),
    (re.compile(r"provisioner-memory-os: agent"), "memory OS: agent"),
    (re.compile(r"provisioner\.agent.*(ERROR|WARNING)"), "agent complains"),
    (re.compile(r"installed-os: booted from the disk"), "disk boot: installed OS"),
    (re.compile(r"installed-os: (root|network config|DHCP|callback|first-boot|FAILED)"), "installed OS"),
]


# Firmware and boot loaders paint the console with terminal escapes; the timeline wants the text.
_ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][0-9A-Za-z]|[\x00-\x08\x0e-\x1f]")


class SerialWatcher:
    def __init__(self, path: Path, timeline: Timeline):
        self.path = path
        self.timeline = timeline
        self.offset = 0
        self.partial = b""

    def poll(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            line = _ANSI.sub("", raw.decode(errors="replace")).strip()
            for pattern, phase in SERIAL_PHASES:
                if pattern.search(line):
                    self.timeline.mark(phase, line[:160])
                    break

    def text(self) -> str:
        return self.path.read_text(errors="replace")


class BmcWatcher:
    def __init__(self, path: Path, timeline: Timeline):
        self.path = path
        self.timeline = timeline
        self.count = 0

    def poll(self) -> None:
        lines = self.path.read_text().splitlines()
        for line in lines[self.count :]:
            self.timeline.mark("BMC/QEMU", line.split(" ", 1)[1])
        self.count = len(lines)


@pytest.mark.slow
@pytest.mark.parametrize("lab", ["bios", "uefi"], indirect=True)
def test_install_on_a_virtual_machine(lab):
    from installs.models import Event, Install, InstallState
    from installs.tokens import callback_token
    from inventory.models import Machine, MachineStatus
    from provisioner.bmc.base import BootDevice
    from provisioner.memory_os.build import PROFILE
    from provisioner.pxe import Loader, tftp_path

    timeline: Timeline = lab["timeline"]
    machine = lab["machine"]
    hostname, mac = lab["hostname"], lab["mac"]
    serial = SerialWatcher(machine.serial, timeline)
    bmc_events = BmcWatcher(machine.state / "events.log", timeline)

    out = lab["services"].manage("install", hostname, "--profile", PROFILE)
    timeline.mark("install requested", out.strip())
    with lab["blocker"].unblock():
        install = Install.objects.select_related("machine__rack__site").get(machine__hostname=hostname)
        base_url = install.machine.rack.site.base_url
        lab["images"].callbacks[mac] = f"{base_url}/i/{callback_token(install.token_nonce)}/events/finished"

    seen_steps: set[tuple[int, str]] = set()
    last_event = 0
    state = None
    deadline = time.monotonic() + INSTALL_BUDGET_S
    while True:
        serial.poll()
        bmc_events.poll()
        with lab["blocker"].unblock():
            install.refresh_from_db()
            for event in Event.objects.filter(install=install, pk__gt=last_event).order_by("pk"):
                timeline.mark(f"event {event.kind}", event.message[:160])
                last_event = event.pk
            for step in install.steps.order_by("order"):
                if (step.pk, step.state) not in seen_steps:
                    seen_steps.add((step.pk, step.state))
                    timeline.mark(f"step {step.order} {step.kind} {step.task}".rstrip(), step.state)
        if install.state != state:
            state = install.state
            timeline.mark("install", state)
        if state in (InstallState.SUCCEEDED, InstallState.FAILED, InstallState.CANCELLED):
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"install still {state} after {INSTALL_BUDGET_S} s; last phases: {timeline.seen[-8:]}; see {lab['run']}"
            )
        time.sleep(1)

    assert state == InstallState.SUCCEEDED, f"{install.failure_reason}: {install.failure_message}"
    text = serial.text()
    assert f"BOOTIF {mac}" in text, "the memory OS did not find its NIC by the BOOTIF MAC"
    assert "installed-os: first-boot callback sent" in text
    with lab["blocker"].unblock():
        has_task = install.steps.filter(task="first_boot_callback").exists()
    if has_task:
        assert "installed-os: callback URL from /etc/provisioner/first-boot" in text, "first_boot_callback left no URL"
    assert f"installed-os: network config matches {mac}" in text, "configure_network did not match the NIC by MAC"
    assert re.search(rf"installed-os: root /dev/\S+, hostname {hostname}\b", text), "set_hostname did not land"
    for loader in (Loader.PXELINUX, Loader.GRUB):
        assert not (lab["tftp_root"] / tftp_path(loader, mac)).exists(), f"the per-MAC {loader} config is still there"
    with lab["blocker"].unblock():
        row = Machine.objects.get(hostname=hostname)
        assert row.status == MachineStatus.DEPLOYED
        facts = row.facts
    assert mac in {nic["mac"] for nic in facts["nics"]}, facts["nics"]
    assert [disk["size_bytes"] for disk in facts["disks"]] == [512 << 20], facts["disks"]
    assert 900 << 20 < facts["memory_bytes"] <= 1 << 30
    timeline.mark("install verified", f"facts: {facts['cpus']} cpu, {facts['memory_bytes'] >> 20} MiB, disks ok")

    # A finished machine must never reinstall: network boot first again, as a firmware's boot order often has it.
    # Without a per-MAC config the loader's default hands the machine on to the local disk by itself, within that
    # one network boot and with no help from the BMC: pxelinux's LOCALBOOT, and under UEFI GRUB's local entry, which
    # finds the EFI system partition on a local disk and chainloads its loader (`exit 1` alone made OVMF retry PXE
    # and open its setup screen). A decoy loader in the TFTP root must not be what it finds: GRUB's search looks at
    # local disks only.
    uefi = lab["firmware"] == "uefi"
    if uefi:
        decoy = lab["tftp_root"] / "EFI" / "BOOT" / "BOOTX64.EFI"
        decoy.parent.mkdir(parents=True)
        decoy.write_bytes(b"not a loader: local boot must never chainload from the TFTP server\n")
    events = machine.state / "events.log"
    events_before = len(events.read_text().splitlines())
    since = len(serial.text())
    bmc = machine.bmc()
    bmc.set_boot_device(BootDevice.PXE, once=True, uefi=uefi)
    bmc.power_cycle()
    timeline.mark("power cycle with network boot first (no install armed)")
    if uefi:
        since, _ = _wait_for(serial, bmc_events, "Booting `Boot local disk'", lab, since)
        timeline.mark("GRUB's default config chose the local disk")
        since, line = _wait_for(serial, bmc_events, "Boot local disk: chainloading ", lab, since)
        assert re.search(r"chainloading \(hd\d+,(msdos|gpt)\d+\)/EFI/BOOT/BOOTX64\.EFI$", line), line
        timeline.mark("GRUB chainloaded the disk's loader", line.split(": ", 1)[1])
    _wait_for(serial, bmc_events, "installed-os: booted from the disk", lab, since)
    timeline.mark("the VM booted its installed disk again")
    after = [line.split(" ", 1)[1] for line in events.read_text().splitlines()[events_before:]]
    starts = [e for e in after if e.startswith(("power-on", "reset", "qemu-failed"))]
    assert starts == ["power-on boot=network"], f"the disk must come up inside the network boot: {after}"
    assert [e for e in after if e.startswith("bmc set boot=")] == ["bmc set boot=pxe"], after


def _wait_for(serial: SerialWatcher, bmc_events: BmcWatcher, marker: str, lab: dict, since: int) -> tuple[int, str]:
    """Wait for `marker` on the console after offset `since`, failing if the memory OS boots meanwhile.

    Returns the offset past the line holding it, and that line (whole: a line still being written is waited for).
    """
    deadline = time.monotonic() + DISK_BOOT_BUDGET_S
    while True:
        serial.poll()
        bmc_events.poll()
        text = serial.text()
        assert "provisioner-memory-os: stage 1" not in text[since:], "it booted the memory OS"
        found = text.find(marker, since)
        end = text.find("\n", found) if found >= 0 else -1
        if end >= 0:
            start = text.rfind("\n", 0, found) + 1
            return end + 1, _ANSI.sub("", text[start:end]).strip()
        if time.monotonic() > deadline:
            pytest.fail(f"no {marker!r} on the console after {DISK_BOOT_BUDGET_S} s; see {lab['run']}")
        time.sleep(1)
