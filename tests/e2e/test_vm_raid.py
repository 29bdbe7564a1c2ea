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


WORKFLOW = """\
name: e2e-raid1
description: RAID 1 over both disks with the image on the array, a script before and after
method: image
stages:
  - name: prepare
    tasks: [check_bmc, write_boot_config, set_boot_pxe, power_cycle, wait_boot]
  - name: disks
    tasks:
      - {task: run_script, params: {script: e2e-pre}}
      - {task: wipe_disks, params: {disks: [{name: sda}, {name: sdb}]}}
      - {task: raid, params: {device: /dev/md0, level: "1", members: [{name: sda}, {name: sdb}], metadata: "1.0"}}
      - {task: write_image, params: {disk: /dev/md0}}
      - {task: bootloader, params: {device: /dev/md0, members: [{name: sda}, {name: sdb}]}}
      - configure_network
      - set_hostname
      - {task: run_script, params: {script: e2e-post}}
      - first_boot_callback
  - name: finish
    tasks: [remove_boot_config, set_boot_disk, reboot, verify]
"""
SCRIPTS = {
    "e2e-pre": 'echo "e2e-pre-script: $(uname -n) before its disks"\n',
    # The array as the memory OS sees it once the image and the installed system's files are on it.
    "e2e-post": 'echo "e2e-post-script: the array:"\ncat /proc/mdstat\n',
}


def _raid1_profile() -> str:
    """The library's scripts and workflow (saved through the library, as the admin and the API save them; a save
    that changes nothing keeps the version), and a profile of the e2e image that names the workflow; its name."""
    from audit.service import Actor
    from installs import library
    from inventory.models import OSProfile
    from provisioner.memory_os.build import PROFILE

    actor = Actor.system("e2e")
    for name, body in SCRIPTS.items():
        library.save_script(name, body, actor, timeout_s=60)
    library.save_workflow(WORKFLOW, actor)
    # The e2e profile as this lab's inventory left it (the image URL names this lab's image server), copied.
    profile = OSProfile.objects.get(name=PROFILE)
    name = f"{PROFILE}-raid1"
    profile.pk = OSProfile.objects.filter(name=name).values_list("pk", flat=True).first()
    profile.name = name
    profile.workflow = "e2e-raid1"
    profile.full_clean(validate_unique=False)
    profile.save()
    return name


@pytest.mark.slow
@pytest.mark.parametrize("lab", ["raid1-bios", "raid1-uefi"], indirect=True)
def test_raid1_install_boots_from_either_disk(lab):
    from installs.models import Event, EventKind, Install, InstallState
    from installs.tokens import callback_token
    from inventory.models import Machine

    timeline = lab["timeline"]
    hostname, mac = lab["hostname"], lab["mac"]
    watch = Watch(lab)

    with lab["blocker"].unblock():
        profile = _raid1_profile()
    started = time.monotonic()
    out = lab["services"].manage("install", hostname, "--profile", profile)
    timeline.mark("install requested", out.strip())
    with lab["blocker"].unblock():
        install = Install.objects.select_related("machine__rack__site").get(machine__hostname=hostname)
        base_url = install.machine.rack.site.base_url
        lab["images"].callbacks[mac] = f"{base_url}/i/{callback_token(install.token_nonce)}/events/finished"
    state = watch.follow_install(install, INSTALL_BUDGET_S)
    assert state == InstallState.SUCCEEDED, f"{install.failure_reason}: {install.failure_message}"
    install_s = time.monotonic() - started
    timeline.mark("install took", f"{install_s:.1f} s from request to succeeded")

    with lab["blocker"].unblock():
        log = "\n".join(Event.objects.filter(install=install, kind=EventKind.LOG).values_list("message", flat=True))
        tasks = list(install.steps.exclude(task="").order_by("order").values_list("task", flat=True))
        facts = Machine.objects.get(hostname=hostname).facts
    assert tasks[:4] == ["run_script", "wipe_disks", "raid", "write_image"], tasks
    assert re.search(r"^e2e-pre-script: \S+ before its disks$", log, re.M), f"no pre-script output in the log:\n{log}"
    assert re.search(r"^e2e-post-script: the array:\nPersonalities : .*raid1", log, re.M), log
    assert re.search(r"^md0 : active raid1 sd[ab]\[\d\] sd[ab]\[\d\]$", log, re.M), f"no mirror of both disks:\n{log}"
    # libata's serial comes through as the end of the disk's T10 identifier (wwid); AHCI probes its ports at once,
    # so q35's kernel may name disk b sda.
    assert [d["size_bytes"] for d in facts["disks"]] == [512 << 20, 512 << 20], facts["disks"]
    serials = sorted(d["serial"].split()[-1] for d in facts["disks"])
    assert serials == [disk_serial("a"), disk_serial("b")], facts["disks"]

    text = watch.serial.text()
    assert "installed-os: first-boot callback sent" in text
    assert "installed-os: callback URL from /etc/provisioner/first-boot" in text, "first_boot_callback left no URL"
    assert re.search(rf"installed-os: root /dev/\S+, hostname {hostname}\b", text), "set_hostname did not land"

    alone = {disk: _installed_os_on(lab, watch, disk) for disk in ("a", "b")}
    timeline.mark(
        "timings",
        f"install {install_s:.1f} s; installed OS from disk a alone {alone['a']:.1f} s, b alone {alone['b']:.1f} s",
    )
