"""Debian 12's own installer lays out a RAID 1 on a two-disk virtual machine: command -> RQ worker -> pyghmi ->
ipmi_sim -> QEMU -> PXE (pxelinux, the per-MAC config) -> debian-installer from the debian-installer-12-netboot-amd64
package -> the stock preseed template rendered with the RAID 1 layout -> packages from the Debian archive (over
QEMU's user network) -> the `finished` callback -> the installed Debian boots from its mirrored disks.

Opt-in within `make e2e` (PROVISIONER_E2E_INSTALLER=1): a whole Debian install takes longer than the rest of the
run. Each phase is logged with its time in var/e2e/installer-raid1/timeline.log.

d-i fetches most of itself (anna, partman, grub-installer...) as udebs from the archive's debian-installer index,
so the archive must carry them: where it lacks one, d-i stops at "Download installer components" about two minutes
in, and the test fails there, naming the question (a question d-i asks at critical priority ends the run at once).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    GUEST_HOST,
    IPMI_PASSWORD,
    IPMI_USER,
    RUN_DIR,
    SITE,
    Machine,
    Services,
    Timeline,
)
from tests.e2e.watch import BmcWatcher

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("PROVISIONER_E2E_INSTALLER") != "1", reason="a Debian install: PROVISIONER_E2E_INSTALLER=1"
    ),
]

# Where the debian-installer-12-netboot-amd64 package puts the netboot kernel and initrd.
DI_IMAGES = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
PROFILE = "debian-12-preseed"
HOSTNAME = "e2e-di-raid1"
MAC = "52:54:00:e2:e0:0d"
DISKS = ("/dev/sda", "/dev/sdb")
DISK_SIZE = "6G"
MEMORY_MIB = 2048
INSTALL_BUDGET_S = 45 * 60
DISK_BOOT_BUDGET_S = 300
# openssl passwd -6 -salt e2einstallersalt e2e-root-pw
ROOT_HASH = "$6$e2einstallersalt$rRQE.1iGNepMeHlpfPtdtwCZt2pUq07zmMQUvlyJjXlUj6bVZZGJdMCepjBgdLikc4.TUAF.XJg6qbxg.XgUv."

INSTALLER_PHASES = [
    (re.compile(r"PXELINUX \d"), "TFTP: pxelinux.0 running"),
    (re.compile(r"Linux version"), "kernel started"),
    (re.compile(r"Loading additional components"), "d-i: loading components"),
    (re.compile(r"Detecting network hardware|Configuring the network"), "d-i: network"),
    (re.compile(r"Partitioning disks|Starting up the partitioner"), "d-i: partitioning"),
    (re.compile(r"Installing the base system"), "d-i: base system"),
    (re.compile(r"Configuring apt|Configuring the package manager"), "d-i: apt"),
    (re.compile(r"Select and install software|Installing software"), "d-i: software"),
    (re.compile(r"Installing GRUB|Install the GRUB"), "d-i: GRUB"),
    (re.compile(r"Finishing the installation"), "d-i: finishing"),
    (re.compile(r"md/raid1:md\d+: active with 2 out of 2 mirrors"), "kernel: RAID 1 active"),
    (re.compile(r"Debian GNU/Linux 12 \S+ ttyS0"), "installed Debian: console"),
]


class InstallerMachine(Machine):
    """conftest's VM behind its BMC with two blank disks big enough for Debian and more memory."""

    def __init__(self, run: Path, tftp_root: Path):
        super().__init__(run, "bios", tftp_root, MAC, ("a", "b"), disk_size=DISK_SIZE, memory_mib=MEMORY_MIB)


def _tftp_root(tftp_root: Path) -> None:
    from provisioner.pxe import write_defaults

    tftp_root.mkdir(parents=True)
    for source in ("/usr/lib/PXELINUX/pxelinux.0", "/usr/lib/syslinux/modules/bios/ldlinux.c32"):
        shutil.copy(source, tftp_root)
    write_defaults(tftp_root)
    # Where the stock profile looks for them.
    images = tftp_root / "images" / "debian-12"
    images.mkdir(parents=True)
    for name in ("linux", "initrd.gz"):
        shutil.copy(DI_IMAGES / name, images / name)


def _inventory(port: int, tftp_root: Path, bmc_port: int) -> None:
    from inventory.models import BMC, NIC, Machine, MachineStatus, OSProfile, Rack, Site
    from inventory.stock import sync_stock_profiles

    sync_stock_profiles()
    site, _ = Site.objects.update_or_create(
        slug=SITE,
        defaults={"name": "End to end", "tftp_root": str(tftp_root), "base_url": f"http://{GUEST_HOST}:{port}"},
    )
    rack, _ = Rack.objects.get_or_create(site=site, name="vm", defaults={"height_u": 42})
    machine = Machine.objects.create(hostname=HOSTNAME, rack=rack, position_u=5, height_u=1, status=MachineStatus.READY)
    NIC.objects.create(machine=machine, name="pxe", mac=MAC, is_pxe=True)
    bmc = BMC(machine=machine, driver="ipmi", address="127.0.0.1", port=bmc_port, username=IPMI_USER)
    bmc.set_password(IPMI_PASSWORD)
    bmc.save()
    # The stock profile and template, running a workflow that mirrors the two disks (RAID 1).
    from audit.service import Actor
    from installs import library, workflow

    text = workflow.stock_text("preseed").replace("name: stock-installer", "name: raid1-installer")
    text = text.replace("stages:", "storage:\n  layout: raid1\n  disks: [" + ", ".join(DISKS) + "]\nstages:", 1)
    library.save_workflow(text, Actor.system("e2e"))
    OSProfile.objects.filter(name=PROFILE).update(workflow="raid1-installer", root_password_hash=ROOT_HASH)


@pytest.fixture
def installer_lab(database, django_db_blocker):
    if not (DI_IMAGES / "linux").exists():
        pytest.fail(f"{DI_IMAGES} is missing: run .ci/e2e-setup (debian-installer-12-netboot-amd64)")
    run = RUN_DIR / "installer-raid1"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    timeline = Timeline(run / "timeline.log")
    tftp_root = run / "tftp"
    _tftp_root(tftp_root)
    services = Services(run).start()
    machine = InstallerMachine(run, tftp_root)
    with django_db_blocker.unblock():
        _inventory(services.port, tftp_root, machine.port)
    timeline.mark("dashboard up", f"daphne 127.0.0.1:{services.port}, BMC udp {machine.port}, QEMU {machine.accel}")
    try:
        yield {"run": run, "timeline": timeline, "services": services, "machine": machine,
               "blocker": django_db_blocker}  # fmt: skip
    finally:
        machine.stop()
        services.stop()


def test_debian_installer_lays_out_raid1_from_the_stock_preseed(installer_lab):
    from installs.models import Event, Install, InstallState
    from provisioner.pxe import Loader, tftp_path

    lab = installer_lab
    timeline: Timeline = lab["timeline"]
    machine: InstallerMachine = lab["machine"]
    serial = PhaseWatcher(machine.serial, timeline)
    bmc_events = BmcWatcher(machine.state / "events.log", timeline)

    out = lab["services"].manage("install", HOSTNAME, "--profile", PROFILE)
    timeline.mark("install requested", out.strip())
    with lab["blocker"].unblock():
        install = Install.objects.get(machine__hostname=HOSTNAME)

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
                    timeline.mark(f"step {step.order} {step.kind}", step.state)
        if install.state != state:
            state = install.state
            timeline.mark("install", state)
        if state in (InstallState.SUCCEEDED, InstallState.FAILED, InstallState.CANCELLED):
            break
        if serial.stuck:
            pytest.fail(
                f"debian-installer stopped at a question it was not preseeded for: {serial.stuck}; see {lab['run']}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"install still {state} after {INSTALL_BUDGET_S} s: {timeline.seen[-8:]}; see {lab['run']}")
        time.sleep(2)
    assert state == InstallState.SUCCEEDED, f"{install.failure_reason}: {install.failure_message}"
    with lab["blocker"].unblock():
        kinds = list(Event.objects.filter(install=install).values_list("kind", flat=True))
    assert "finished" in kinds, kinds
    assert not (lab["run"] / "tftp" / tftp_path(Loader.PXELINUX, MAC)).exists(), "the per-MAC config is still there"

    # d-i reboots by itself; QEMU keeps booting the network first, and the default config hands on to the disk.
    deadline = time.monotonic() + DISK_BOOT_BUDGET_S
    login = re.compile(rf"^{HOSTNAME} login:", re.M)
    while not login.search(_plain(serial.text())):
        serial.poll()
        bmc_events.poll()
        if time.monotonic() > deadline:
            pytest.fail(f"no login prompt of the installed Debian after {DISK_BOOT_BUDGET_S} s; see {lab['run']}")
        time.sleep(2)
    timeline.mark("installed Debian: login prompt")
    booted = _plain(serial.text())
    booted = booted[booted.rfind("Linux version") :]
    # Both arrays of the layout, each mirrored over both disks: /boot (md0) and the root (md1).
    for array in ("md0", "md1"):
        assert re.search(rf"md/raid1:{array}: active with 2 out of 2 mirrors", booted), f"{array} not a 2-disk mirror"
    timeline.mark("verified", "md0 and md1 each mirror both disks; finished callback; per-MAC config removed")


# d-i shows "[!!] <title>" only for a question it must ask at critical priority: the preseed did not answer it, or
# something failed (a download from the mirror). Nobody will answer it, so the run stops there.
_STUCK = re.compile(r"\[!!\] (.+?)(?: tq|\s{2,}|$)")


class PhaseWatcher:
    """Marks each installer phase on the serial console once: d-i redraws its screens many times."""

    def __init__(self, path: Path, timeline: Timeline):
        self.path = path
        self.timeline = timeline
        self.offset = 0
        self.partial = ""
        self.marked: set[str] = set()
        self.stuck = ""

    def poll(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        lines = (self.partial + _plain(chunk.decode(errors="replace"))).split("\n")
        # d-i's screens are drawn with cursor moves and rarely end a line: the unfinished one is read too, and
        # kept bounded.
        self.partial = lines[-1][-65536:]
        for line in lines:
            stuck = _STUCK.search(line)
            if stuck and not self.stuck:
                self.stuck = stuck.group(1)
                self.timeline.mark("d-i stopped at a question", self.stuck)
            for pattern, phase in INSTALLER_PHASES:
                if phase not in self.marked and pattern.search(line):
                    self.marked.add(phase)
                    self.timeline.mark(phase, line.strip()[:160])

    def text(self) -> str:
        return self.path.read_text(errors="replace")


_ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][0-9A-Za-z]|[\x00-\x08\x0e-\x1f]")


def _plain(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "")
