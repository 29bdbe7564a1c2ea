"""Boot mode through a whole install against sushy-tools' Redfish emulator: a machine whose mode is not known
keeps the mode its BMC has (no BootSourceOverrideMode is sent), the agent's facts teach it the mode, and from
then every boot-device request asks for that mode. A UEFI server's override stays UEFI from the network boot
to the boot from disk."""

from __future__ import annotations

import pytest
import sushy

from installs import callbacks
from inventory.models import BootMode, Machine
from provisioner.bmc import BootDevice
from provisioner.bmc.redfish import RedfishDriver
from tests.integration.bmc.conftest import FAKE_SYSTEM, RedfishEmulator
from tests.integration.installs.test_hardware_raid import on_redfish


@pytest.fixture
def redfish_emulator(tmp_path):
    emulator = RedfishEmulator(tmp_path)
    yield emulator
    emulator.stop()


def boot_of(emulator) -> tuple[str, str]:
    """The emulated system's boot override (target, mode), read straight from the BMC."""
    boot = RedfishDriver(emulator.target())._system().boot
    return str(boot.target), str(boot.mode)


def test_a_uefi_servers_override_stays_uefi_through_a_whole_install(lab, redfish_emulator):
    # The server boots by UEFI; inventory does not know it yet.
    RedfishDriver(redfish_emulator.target()).set_boot_device(BootDevice.DISK, once=False, uefi=True)
    machine = lab.machine()
    on_redfish(machine, redfish_emulator)
    assert machine.boot_mode == BootMode.UNKNOWN
    install = lab.install([machine], lab.image_profile())
    lab.run_jobs()  # check the BMC, boot config, network boot once, power cycle, wait for the agent
    assert boot_of(redfish_emulator) == (str(sushy.BootSource.PXE), str(sushy.BootSourceOverrideMode.UEFI))
    facts = {"nics": [{"mac": machine.pxe_nic.mac}], "disks": [{"path": "/dev/sda", "size_bytes": 10**10}],
             "efi": True}  # fmt: skip
    callbacks.agent_register(install.pk, facts, boot_credential=True)
    assert Machine.objects.get(pk=machine.pk).boot_mode == BootMode.UEFI  # learned from the memory OS
    while task := callbacks.agent_next_task(install.pk)["task"]:
        callbacks.agent_result(install.pk, task["id"], True, "", "", "")
    lab.run_jobs()  # boot config removed, boot from disk, reboot
    install.refresh_from_db()
    assert install.steps.get(kind="set_boot_disk").state == "succeeded", install.failure_message
    assert boot_of(redfish_emulator) == (str(sushy.BootSource.HDD), str(sushy.BootSourceOverrideMode.UEFI))


def test_a_legacy_machine_asks_for_legacy_and_an_unknown_one_changes_nothing(redfish_emulator):
    driver = RedfishDriver(redfish_emulator.target())
    driver.set_boot_device(BootDevice.PXE, once=True, uefi=False)
    assert boot_of(redfish_emulator)[1] == str(sushy.BootSourceOverrideMode.LEGACY)
    driver.set_boot_device(BootDevice.DISK, once=False, uefi=None)
    assert boot_of(redfish_emulator) == (str(sushy.BootSource.HDD), str(sushy.BootSourceOverrideMode.LEGACY))
    driver.set_boot_device(BootDevice.PXE, once=True, uefi=True)
    assert boot_of(redfish_emulator)[1] == str(sushy.BootSourceOverrideMode.UEFI)
    assert FAKE_SYSTEM in driver._system().path
