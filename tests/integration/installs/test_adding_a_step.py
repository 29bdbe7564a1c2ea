"""Adding a worker step is a row in the step kinds table, its runner function and a row in the task table
that lets workflows name it, nothing else: this module adds one (a check of the installed OS over SSH, as
docs/design.md describes), names it last in a workflow and installs through it with the real engine and an
RQ worker."""

from __future__ import annotations

import pytest

from audit.service import Actor
from installs import callbacks, library, taskkinds, workflow
from installs.models import Event, Install, InstallState, StepState
from installs.states import InstallState as Phase
from installs.stepkinds import KINDS, Mover, StepKindSpec
from installs.steps import StepFailed
from installs.taskkinds import Category, TaskKind

SSH_UPTIME = "ssh_uptime"
calls: list[str] = []


def ssh_uptime(install, step) -> dict:
    """The runner: one short call (here, a stand-in for the SSH session), safe to run twice."""
    calls.append(install.plan.machine.hostname)
    if install.plan.machine.hostname.startswith("flaky") and calls.count(install.plan.machine.hostname) == 1:
        raise StepFailed("SshUnreachable", "The jump host did not answer.", retryable=True)
    if install.plan.machine.hostname.startswith("broken"):
        raise StepFailed("UptimeTooShort", f"{install.plan.machine.hostname} rebooted again after its install.")
    return {"uptime_s": 42}


@pytest.fixture
def ssh_uptime_step(monkeypatch):
    calls.clear()
    monkeypatch.setitem(
        KINDS,
        SSH_UPTIME,
        StepKindSpec(SSH_UPTIME, Phase.VERIFYING, Mover.WORKER, runner=ssh_uptime, label="Uptime over SSH"),
    )
    monkeypatch.setitem(
        taskkinds.TASKS,
        SSH_UPTIME,
        TaskKind(SSH_UPTIME, Category.CONTROL, SSH_UPTIME, "How long the installed OS has been up."),
    )
    # A workflow naming it: the stock installer workflow with the new task last.
    text = workflow.stock_text("preseed").replace("name: stock-installer", "name: with-uptime")
    library.save_workflow(text + "      - ssh_uptime\n", Actor.system("test"))


def _profile(lab):
    profile = lab.profile()
    profile.workflow = "with-uptime"
    profile.full_clean()
    profile.save()
    return profile


def test_an_install_runs_a_step_added_to_the_table(lab, ssh_uptime_step):
    machine = lab.machine(hostname="node-uptime")
    install = lab.install([machine], profile=_profile(lab))
    steps = list(install.steps.order_by("order"))
    assert steps[-1].kind == SSH_UPTIME and install.plan.step_count == len(steps)  # last, as the table is
    lab.run_jobs()  # up to the installer's wait
    assert callbacks.installer_event(install.pk, "finished", "done") == "finished"
    lab.run_jobs()
    install.refresh_from_db()
    added = install.steps.get(kind=SSH_UPTIME)
    assert install.state == InstallState.SUCCEEDED, install.failure_message
    assert added.state == StepState.SUCCEEDED and added.result == {"uptime_s": 42} and added.attempts == 1
    assert calls == ["node-uptime"]
    assert Event.objects.filter(install=install, step=added, message="Uptime over SSH: done").exists()


def test_a_failing_added_step_retries_and_fails_the_install_like_any_other(lab, ssh_uptime_step):
    flaky, broken = lab.machine(hostname="flaky-1"), lab.machine(hostname="broken-1")
    installs = lab.install([flaky, broken], profile=_profile(lab), stagger_s=0)
    lab.run_jobs()
    for install in installs:
        callbacks.installer_event(install.pk, "finished", "done")
    lab.run_jobs()
    flaky_install, broken_install = (Install.objects.get(pk=i.pk) for i in installs)
    assert flaky_install.state == InstallState.SUCCEEDED
    assert flaky_install.steps.get(kind=SSH_UPTIME).attempts == 2
    assert broken_install.state == InstallState.FAILED and broken_install.failure_reason == "UptimeTooShort"
    assert broken_install.steps.get(kind=SSH_UPTIME).state == StepState.FAILED
    assert "rebooted again" in broken_install.failure_message
