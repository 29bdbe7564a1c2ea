"""The hardware_raid task run by the real engine (PostgreSQL, Redis, RQ): against sushy-tools' Redfish emulator it
builds the volume before the machine is power cycled; a BMC without a storage service, or a machine protected
during the install, fails the install with what to do."""

from __future__ import annotations

import pytest

from audit.service import Actor
from installs import library
from installs.batches import InstallRefused
from installs.models import Event, Install, InstallState, StepState
from inventory.services import set_protected
from tests.integration.bmc.conftest import FAKE_SYSTEM, REDFISH_PASSWORD, REDFISH_USER, RedfishEmulator

ADMIN = Actor.system("admin")
PERC = "RAID.Integrated.1-1"

WORKFLOW = """\
name: {name}
method: image
stages:
  - name: prepare
    tasks:
      - check_bmc
      - task: hardware_raid
        params: {{level: RAID1, drives: [Disk.Bay.0, Disk.Bay.1], name: system, controller: {controller}}}
      - write_boot_config
  - name: boot
    tasks: [set_boot_pxe, power_cycle, wait_boot]
  - name: write
    tasks: [write_image, first_boot_callback]
  - name: finish
    tasks: [remove_boot_config, set_boot_disk, reboot]
  - name: verify
    tasks: [verify, verify_ssh]
"""


@pytest.fixture
def redfish_emulator(tmp_path):
    emulator = RedfishEmulator(tmp_path)
    yield emulator
    emulator.stop()


def requested(lab, machine, name: str):
    row, _ = library.save_workflow(WORKFLOW.format(name=name, controller=PERC), ADMIN)
    profile = lab.image_profile()
    profile.workflow = row.name
    profile.save()
    return lab.install([machine], profile)


def on_redfish(machine, emulator) -> None:
    bmc = machine.bmc
    bmc.driver, bmc.address, bmc.port, bmc.username = "redfish", "127.0.0.1", emulator.port, REDFISH_USER
    bmc.set_password(REDFISH_PASSWORD)
    bmc.save()


def test_the_volume_is_built_through_redfish_before_the_power_cycle(lab, redfish_emulator):
    machine = lab.machine()
    on_redfish(machine, redfish_emulator)
    install = requested(lab, machine, "hw-raid1")
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.BOOTING, (install.failure_reason, install.failure_message)
    steps = list(install.steps.order_by("order").values_list("kind", "state"))
    assert steps[:5] == [
        ("check_bmc", StepState.SUCCEEDED),
        ("hardware_raid", StepState.SUCCEEDED),
        ("write_boot_config", StepState.SUCCEEDED),
        ("set_boot_pxe", StepState.SUCCEEDED),
        ("power_cycle", StepState.SUCCEEDED),
    ]
    raid = install.steps.get(kind="hardware_raid")
    assert raid.result == {
        "controller": PERC,
        "volume": "Volume1",
        "level": "RAID1",
        "drives": ["Disk.Bay.0", "Disk.Bay.1"],
    }
    [posted] = redfish_emulator.posted_volumes()
    assert posted["path"] == f"/redfish/v1/Systems/{FAKE_SYSTEM}/Storage/{PERC}/Volumes"
    assert posted["body"]["RAIDType"] == "RAID1" and posted["body"]["Name"] == "system"
    assert Event.objects.filter(
        install=install, step=raid, message=f"RAID1 volume 'system' on controller {PERC} created: Volume1"
    ).exists()


def test_a_bmc_without_a_storage_service_is_refused_when_the_install_is_requested(lab):
    machine = lab.machine()  # a fake BMC: no storage service
    with pytest.raises(InstallRefused) as caught:
        requested(lab, machine, "hw-raid-ipmi")
    message = str(caught.value)
    assert "the Fake (demo and tests) driver cannot do hardware RAID" in message and "hw-raid-ipmi" in message
    assert not Install.objects.filter(machine=machine).exists()


def test_a_driver_changed_after_the_request_fails_the_step_before_the_bmc_is_asked(lab, redfish_emulator):
    machine = lab.machine()
    on_redfish(machine, redfish_emulator)
    install = requested(lab, machine, "hw-raid-changed")
    bmc = machine.bmc
    bmc.driver = "fake"
    bmc.save()
    lab.run_jobs()
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "CapabilityMissing")
    assert "cannot do hardware RAID" in install.failure_message and "Nothing was sent" in install.failure_message
    assert install.steps.get(kind="set_boot_pxe").state == StepState.SKIPPED  # never powered into the boot


def test_a_machine_protected_during_the_install_refuses_it(lab, redfish_emulator):
    machine = lab.machine()
    on_redfish(machine, redfish_emulator)
    install = requested(lab, machine, "hw-raid-protected")
    set_protected(machine.pk, True, actor=ADMIN, reason="holds the only copy of the ledger")
    lab.run_jobs()
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "MachineProtected")
    assert "hardware RAID refused" in install.failure_message
    assert redfish_emulator.posted_volumes() == []
