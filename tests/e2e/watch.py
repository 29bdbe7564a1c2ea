"""Watching a VM run: its serial console and its BMC's chassis events become timeline phases, an install is
followed to its end, and a marker is waited for on the console. Shared by the VM tests."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Timeline

SERIAL_PHASES = [
    (re.compile(r"iPXE \d|iPXE initiali"), "firmware: iPXE PXE ROM"),
    (re.compile(r"Start PXE over IPv4"), "firmware: UEFI PXE"),
    (re.compile(r"Station IP address is|DHCP \(net0.*ok|Configuring \(net0"), "DHCP (firmware)"),
    (re.compile(r"Boot failed: "), "firmware: boot failed"),
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
    (re.compile(r"installed-os: (disks|root|network config|DHCP|callback|first-boot|FAILED)"), "installed OS"),
]

# Firmware and boot loaders paint the console with terminal escapes; the timeline wants the text.
ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][0-9A-Za-z]|[\x00-\x08\x0e-\x1f]")


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
            line = ANSI.sub("", raw.decode(errors="replace")).strip()
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


class Watch:
    """The lab's console and BMC events, polled together."""

    def __init__(self, lab: dict):
        self.lab = lab
        self.timeline: Timeline = lab["timeline"]
        self.serial = SerialWatcher(lab["machine"].serial, self.timeline)
        self.bmc_events = BmcWatcher(lab["machine"].state / "events.log", self.timeline)

    def poll(self) -> None:
        self.serial.poll()
        self.bmc_events.poll()

    def follow_install(self, install, budget_s: float) -> str:
        """Mark the install's events, steps and states until it ends; its final state. Fails past the budget."""
        from installs.models import Event, InstallState

        seen_steps: set[tuple[int, str]] = set()
        last_event = 0
        state = None
        deadline = time.monotonic() + budget_s
        while True:
            self.poll()
            with self.lab["blocker"].unblock():
                install.refresh_from_db()
                for event in Event.objects.filter(install=install, pk__gt=last_event).order_by("pk"):
                    self.timeline.mark(f"event {event.kind}", event.message[:160])
                    last_event = event.pk
                for step in install.steps.order_by("order"):
                    if (step.pk, step.state) not in seen_steps:
                        seen_steps.add((step.pk, step.state))
                        self.timeline.mark(f"step {step.order} {step.kind} {step.task}".rstrip(), step.state)
            if install.state != state:
                state = install.state
                self.timeline.mark("install", state)
            if state in (InstallState.SUCCEEDED, InstallState.FAILED, InstallState.CANCELLED):
                return state
            if time.monotonic() > deadline:
                pytest.fail(
                    f"install still {state} after {budget_s} s; last phases: {self.timeline.seen[-8:]}; "
                    f"see {self.lab['run']}"
                )
            time.sleep(1)

    def wait_for(self, marker: str, since: int, budget_s: float) -> tuple[int, str]:
        """Wait for `marker` on the console after offset `since`, failing if the memory OS boots meanwhile.

        Returns the offset past the line holding it, and that line (whole: a line still being written is waited
        for).
        """
        deadline = time.monotonic() + budget_s
        while True:
            self.poll()
            text = self.serial.text()
            assert "provisioner-memory-os: stage 1" not in text[since:], "it booted the memory OS"
            found = text.find(marker, since)
            end = text.find("\n", found) if found >= 0 else -1
            if end >= 0:
                start = text.rfind("\n", 0, found) + 1
                return end + 1, ANSI.sub("", text[start:end]).strip()
            if time.monotonic() > deadline:
                pytest.fail(f"no {marker!r} on the console after {budget_s} s; see {self.lab['run']}")
            time.sleep(1)
