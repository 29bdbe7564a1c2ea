"""A fast machine can answer before the worker that rebooted it has moved the install into the wait for
that answer: the agent registers while the power-cycle step is still settling, the installed OS calls
back while the reboot step is. The answer must count, not be taken for a duplicate and dropped (the
install then failed with a timeout although the machine had done everything)."""

from __future__ import annotations

import dataclasses

from installs import callbacks
from installs import steps as runners
from installs.models import InstallState, Step, StepKind, StepState
from installs.stepkinds import KINDS


def nics(machine) -> dict:
    return {"nics": [{"mac": machine.pxe_nic.mac}], "disks": [{"path": "/dev/vda", "size_bytes": 10 << 30}]}


def run_agent_tasks(install) -> None:
    """The agent's part, done at once: every task it is handed succeeds."""
    while (task := callbacks.agent_next_task(install.pk)["task"]) is not None:
        callbacks.agent_result(install.pk, task["id"], True, "", "done", "")


def test_an_agent_that_registers_before_its_wait_begins_is_not_lost(lab, monkeypatch):
    machine = lab.machine()
    install = lab.install([machine], lab.image_profile())
    power_cycle = runners.power_cycle

    def machine_up_before_the_worker_settles(install, step):
        result = power_cycle(install, step)
        callbacks.agent_register(install.pk, nics(machine), boot_credential=True)
        return result

    kind = KINDS[StepKind.POWER_CYCLE]
    monkeypatch.setitem(KINDS, kind.kind, dataclasses.replace(kind, runner=machine_up_before_the_worker_settles))
    lab.run_jobs()
    install.refresh_from_db()
    assert Step.objects.get(install=install, kind=StepKind.WAIT_BOOT).state == StepState.SUCCEEDED
    assert install.state == InstallState.INSTALLING
    assert callbacks.agent_next_task(install.pk)["task"] is not None


def test_a_first_boot_callback_before_the_verify_wait_begins_is_not_lost(lab, monkeypatch):
    machine = lab.machine()
    install = lab.install([machine], lab.image_profile())
    lab.run_jobs()
    callbacks.agent_register(install.pk, nics(machine), boot_credential=True)
    lab.run_jobs()
    reboot = runners.reboot

    def installed_os_up_before_the_worker_settles(install, step):
        result = reboot(install, step)
        assert callbacks.installer_event(install.pk, "finished", "first boot") != "duplicate"
        return result

    kind = KINDS[StepKind.REBOOT]
    monkeypatch.setitem(KINDS, kind.kind, dataclasses.replace(kind, runner=installed_os_up_before_the_worker_settles))
    run_agent_tasks(install)
    lab.run_jobs()
    install.refresh_from_db()
    assert Step.objects.get(install=install, kind=StepKind.VERIFY).state == StepState.SUCCEEDED
    assert install.state == InstallState.SUCCEEDED, (install.state, install.failure_message)


def test_a_callback_for_a_wait_two_steps_away_is_still_a_duplicate(lab):
    machine = lab.machine()
    install = lab.install([machine], lab.image_profile())
    lab.run_jobs()
    callbacks.agent_register(install.pk, nics(machine), boot_credential=True)
    lab.run_jobs()
    # Installing: a stray 'finished' now is not the installed OS (it has not even been written).
    assert callbacks.installer_event(install.pk, "finished", "too early") == "duplicate"
    assert Step.objects.get(install=install, kind=StepKind.VERIFY).result == {}
