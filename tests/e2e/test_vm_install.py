"""The whole chain on a virtual machine: command -> RQ worker -> pyghmi -> ipmi_sim -> QEMU -> PXE (pxelinux or
GRUB) -> memory OS -> agent -> dashboard -> disk boot -> first-boot callback -> succeeded.

Each phase is logged with its time (see var/e2e/<lab>/timeline.log), from the serial console, the BMC's
chassis events and the install's own events, so a failure says where the chain broke.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.watch import Watch

# The whole test, both firmwares, must fit in 15 minutes of a 2-core machine emulating x86 in software.
INSTALL_BUDGET_S = 330
DISK_BOOT_BUDGET_S = 150


@pytest.mark.slow
@pytest.mark.parametrize("lab", ["bios", "uefi"], indirect=True)
def test_install_on_a_virtual_machine(lab):
    from installs.models import Install, InstallState
    from installs.tokens import callback_token
    from inventory.models import Machine, MachineStatus
    from provisioner.bmc.base import BootDevice
    from provisioner.memory_os.build import PROFILE
    from provisioner.pxe import Loader, tftp_path

    timeline = lab["timeline"]
    machine = lab["machine"]
    hostname, mac = lab["hostname"], lab["mac"]
    watch = Watch(lab)
    serial = watch.serial

    out = lab["services"].manage("install", hostname, "--profile", PROFILE)
    timeline.mark("install requested", out.strip())
    with lab["blocker"].unblock():
        install = Install.objects.select_related("machine__rack__site").get(machine__hostname=hostname)
        base_url = install.machine.rack.site.base_url
        lab["images"].callbacks[mac] = f"{base_url}/i/{callback_token(install.token_nonce)}/events/finished"

    state = watch.follow_install(install, INSTALL_BUDGET_S)

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
    assert "installed-os: disks sda=E2E-DISK-A\n" in text, "the installed OS does not see its one disk by serial"
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
        since, _ = watch.wait_for("Booting `Boot local disk'", since, DISK_BOOT_BUDGET_S)
        timeline.mark("GRUB's default config chose the local disk")
        since, line = watch.wait_for("Boot local disk: chainloading ", since, DISK_BOOT_BUDGET_S)
        assert re.search(r"chainloading \(hd\d+,(msdos|gpt)\d+\)/EFI/BOOT/BOOTX64\.EFI$", line), line
        timeline.mark("GRUB chainloaded the disk's loader", line.split(": ", 1)[1])
    watch.wait_for("installed-os: booted from the disk", since, DISK_BOOT_BUDGET_S)
    timeline.mark("the VM booted its installed disk again")
    after = [line.split(" ", 1)[1] for line in events.read_text().splitlines()[events_before:]]
    starts = [e for e in after if e.startswith(("power-on", "reset", "qemu-failed"))]
    assert starts == ["power-on boot=network"], f"the disk must come up inside the network boot: {after}"
    assert [e for e in after if e.startswith("bmc set boot=")] == ["bmc set boot=pxe"], after
