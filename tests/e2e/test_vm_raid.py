"""A two-disk machine installed through a RAID 1 workflow boots its installed OS, and still does with either disk
pulled out: the chain of test_vm_install.py, then two power-ons over the BMC with one disk attached each time.

The image goes onto /dev/md0, a RAID 1 with metadata 1.0 over both whole disks: the superblock sits at each
member's end, so each member carries the image from sector 0 and its MBR, syslinux and partitions work without
the other. The installed OS reports the disks it sees by serial and the disk its root sits on.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import disk_serial
from tests.e2e.watch import Watch

INSTALL_BUDGET_S = 330
DISK_BOOT_BUDGET_S = 150
POWER_OFF_BUDGET_S = 30


def _power_off(lab: dict, watch: Watch) -> None:
    machine = lab["machine"]
    machine.bmc().power_off()
    deadline = time.monotonic() + POWER_OFF_BUDGET_S
    while machine.qemu_pid() is not None:
        watch.poll()
        if time.monotonic() > deadline:
            pytest.fail(f"QEMU still runs {POWER_OFF_BUDGET_S} s after the BMC's power off; see {lab['run']}")
        time.sleep(0.2)


def _boot_with_only(lab: dict, watch: Watch, disk: str) -> tuple[int, float]:
    """Power the machine off, leave only `disk` in it, power it on over the BMC (disk boot, the BMC's default
    after an install); the console offset the boot starts at and the time it started."""
    from provisioner.bmc.base import BootDevice

    _power_off(lab, watch)
    lab["machine"].attach(disk)
    since = len(watch.serial.text())
    bmc = lab["machine"].bmc()
    bmc.set_boot_device(BootDevice.DISK, once=True, uefi=lab["firmware"] == "uefi")
    started = time.monotonic()
    bmc.power_on()
    watch.timeline.mark(f"power on with only disk {disk} ({disk_serial(disk)})")
    return since, started


def _installed_os_on(lab: dict, watch: Watch, disk: str) -> float:
    """Boot with only `disk`; it must reach the installed OS, see that one disk and mount the root on it. The
    seconds from power-on to the host name on the console."""
    since, started = _boot_with_only(lab, watch, disk)
    serial = disk_serial(disk)
    since, line = watch.wait_for("installed-os: disks ", since, DISK_BOOT_BUDGET_S)
    assert re.fullmatch(rf"installed-os: disks (sd[a-z])={serial}", line), f"not only disk {disk}: {line}"
    since, line = watch.wait_for("installed-os: root /dev/", since, DISK_BOOT_BUDGET_S)
    assert re.fullmatch(rf"installed-os: root /dev/sd[a-z]\d+ on disk sd[a-z], serial {serial}", line), line
    since, line = watch.wait_for("installed-os: root /dev/", since, DISK_BOOT_BUDGET_S)
    assert line.endswith(f", hostname {lab['hostname']}"), f"the host name set through the array is not there: {line}"
    elapsed = time.monotonic() - started
    watch.timeline.mark(f"installed OS up from disk {disk} alone", f"{elapsed:.1f} s from power on")
    return elapsed


def _no_boot_from(lab: dict, watch: Watch, disk: str) -> None:
    """Boot with only `disk`, which holds nothing: the firmware must say it cannot boot it."""
    since, _ = _boot_with_only(lab, watch, disk)
    watch.wait_for("Boot failed: not a bootable disk", since, DISK_BOOT_BUDGET_S)
    watch.timeline.mark(f"disk {disk} alone does not boot")


@pytest.mark.slow
@pytest.mark.parametrize("lab", ["raid1-bios"], indirect=True)
def test_raid1_install_boots_from_either_disk(lab):
    from installs.models import Install, InstallState
    from installs.tokens import callback_token
    from inventory.models import Machine
    from provisioner.memory_os.build import PROFILE

    timeline = lab["timeline"]
    hostname, mac = lab["hostname"], lab["mac"]
    watch = Watch(lab)

    started = time.monotonic()
    out = lab["services"].manage("install", hostname, "--profile", PROFILE)
    timeline.mark("install requested", out.strip())
    with lab["blocker"].unblock():
        install = Install.objects.select_related("machine__rack__site").get(machine__hostname=hostname)
        base_url = install.machine.rack.site.base_url
        lab["images"].callbacks[mac] = f"{base_url}/i/{callback_token(install.token_nonce)}/events/finished"
    state = watch.follow_install(install, INSTALL_BUDGET_S)
    assert state == InstallState.SUCCEEDED, f"{install.failure_reason}: {install.failure_message}"
    timeline.mark("install took", f"{time.monotonic() - started:.1f} s from request to succeeded")

    text = watch.serial.text()
    assert "installed-os: first-boot callback sent" in text
    assert re.search(rf"installed-os: root /dev/\S+, hostname {hostname}\b", text), "set_hostname did not land"
    with lab["blocker"].unblock():
        facts = Machine.objects.get(hostname=hostname).facts
    # libata's serial comes through as part of the disk's T10 identifier (wwid).
    assert [d["size_bytes"] for d in facts["disks"]] == [512 << 20, 512 << 20], facts["disks"]
    assert [disk_serial("a") in facts["disks"][0]["serial"], disk_serial("b") in facts["disks"][1]["serial"]] == [
        True,
        True,
    ], facts["disks"]

    seconds = _installed_os_on(lab, watch, "a")
    _no_boot_from(lab, watch, "b")
    timeline.mark("degraded boots", f"disk a alone {seconds:.1f} s")
