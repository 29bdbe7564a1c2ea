"""The install state machine end to end on real PostgreSQL, Redis and RQ, with the fake BMC driver."""

import pytest
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEntry
from audit.service import Actor
from installs import callbacks, credentials, engine, tokens
from installs.batches import InstallRefused
from installs.models import (
    TERMINAL_STATES,
    TRANSITIONS,
    Alert,
    Event,
    Install,
    InstallState,
    Step,
    StepKind,
    StepState,
)
from installs.sweeper import sweep
from provisioner.bmc import BootDevice, PowerState
from tests.integration.installs.asgi_client import via_route

ALL_STATES = [s.value for s in InstallState]


def test_the_transitions_table_covers_every_state_and_ends_in_terminal_states():
    assert set(TRANSITIONS) == set(ALL_STATES)
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
    for state, targets in TRANSITIONS.items():
        if state not in TERMINAL_STATES:
            assert {InstallState.FAILED, InstallState.CANCELLED} <= targets
            assert state not in targets


@pytest.mark.parametrize("frm", [s for s in ALL_STATES if s not in TERMINAL_STATES])
@pytest.mark.parametrize("to", ALL_STATES)
def test_every_transition_is_applied_or_refused_by_the_table(lab, frm, to):
    install = lab.install([lab.machine()])
    Install.objects.filter(pk=install.pk).update(state=frm)
    if to in TRANSITIONS[frm]:
        engine.transition(install.pk, to=to, expect=frm, actor=Actor.system("test"))
        install.refresh_from_db()
        assert install.state == to
        entry = AuditEntry.objects.filter(action="install.transition", object_id=str(install.pk)).order_by("id").last()
        assert entry.details["from"] == frm and entry.details["to"] == to
        assert Event.objects.filter(install=install, kind="state", data__to=to).exists()
    else:
        with pytest.raises(engine.InvalidTransition):
            engine.transition(install.pk, to=to, expect=frm)
        install.refresh_from_db()
        assert install.state == frm


def test_a_stale_transition_is_refused_and_changes_nothing(lab):
    install = lab.install([lab.machine()])
    with pytest.raises(engine.StaleTransition):
        engine.transition(install.pk, to=InstallState.POWERING, expect=InstallState.BOOTING)
    install.refresh_from_db()
    assert install.state == InstallState.PREPARING  # admitted at once: the batch has room


def test_preseed_install_from_request_to_success(lab):
    machine = lab.machine()
    install = lab.install([machine])
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.BOOTING and install.deadline_at is not None
    # The machine was told to boot from the network once, then power cycled.
    bmc = lab.bmc(machine)
    assert bmc.boots == [BootDevice.PXE] and bmc.power == PowerState.ON
    # Its per-MAC boot configs carry this install's boot credential, and no other token.
    assert lab.per_mac_files(machine) == [
        f"grub/grub.cfg-01-{machine.pxe_nic.mac.replace(':', '-')}",
        f"pxelinux.cfg/01-{machine.pxe_nic.mac.replace(':', '-')}",
    ]
    token = tokens.boot_token(install.token_nonce)
    callback = tokens.callback_token(install.token_nonce)
    pxelinux = (lab.tftp_root / lab.per_mac_files(machine)[1]).read_text()
    assert f"/i/{token}/preseed.cfg" in pxelinux and f"netcfg/choose_interface={machine.pxe_nic.mac}" in pxelinux
    assert callback not in pxelinux and tokens.agent_token(install.token_nonce) not in pxelinux
    assert token not in str(install.plan) and install.boot_token_hash == tokens.token_hash(token)

    assert credentials.boot_install(token) == install and credentials.callback_install(callback) == install
    assert callbacks.installer_event(install.pk, "started") == "booted"
    assert callbacks.installer_event(install.pk, "started") == "duplicate"
    callbacks.installer_event(install.pk, "progress", "installing packages", {"percent": 40})
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.INSTALLING
    assert callbacks.installer_event(install.pk, "finished") == "finished"
    lab.run_jobs()
    install.refresh_from_db()
    machine.refresh_from_db()
    assert install.state == InstallState.SUCCEEDED and install.progress == 100
    assert machine.status == "deployed"
    assert lab.per_mac_files(machine) == []
    assert bmc.boot_device == BootDevice.DISK and bmc.boot_once is False
    assert set(install.steps.exclude(kind=StepKind.VERIFY_SSH).values_list("state", flat=True)) == {"succeeded"}
    ssh = install.steps.get(kind=StepKind.VERIFY_SSH)  # no jump host configured for this site
    assert ssh.state == StepState.SKIPPED and ssh.message.startswith("SSH verification skipped: ")
    states = [e.data["to"] for e in Event.objects.filter(install=install, kind="state").order_by("id")]
    assert states == [
        "queued",
        "preparing",
        "powering",
        "booting",
        "installing",
        "finalizing",
        "verifying",
        "succeeded",
    ]
    # The tokens are dead once the install has ended.
    assert credentials.boot_install(token) is None and credentials.callback_install(callback) is None


def test_image_install_with_agent_tasks(lab):
    machine = lab.machine()
    install = lab.install([machine], lab.image_profile())
    lab.run_jobs()
    token = tokens.boot_token(install.token_nonce)
    pxelinux = (lab.tftp_root / lab.per_mac_files(machine)[1]).read_text()
    assert f"provisioner.token={token}" in pxelinux
    facts = {"nics": [{"mac": machine.pxe_nic.mac, "link": True}], "disks": [{"path": "/dev/vda", "size_bytes": 10}]}
    agent_token = callbacks.agent_register(install.pk, facts, boot_credential=True).token
    seen = []
    while (answer := callbacks.agent_next_task(install.pk))["task"]:
        task = answer["task"]
        assert callbacks.agent_next_task(install.pk)["task"] == task  # asking again hands out the same task
        seen.append(task["kind"])
        report = {"percent": 50, "message": "half way", "log": ["line 1"]}
        assert via_route(f"tasks/{task['id']}/progress", report, agent_token)[0] == 200
        assert callbacks.agent_result(install.pk, task["id"], True, "", "done", "out") == "ok"
        assert callbacks.agent_result(install.pk, task["id"], True, "", "done", "out") == "duplicate"
    assert answer == {"task": None, "retry_after_s": 2} or answer.get("finished")
    assert seen == ["wipe_disks", "write_image", "configure_network", "set_hostname", "ssh_keys", "first_boot_callback"]
    write = install.steps.get(task="write_image")
    assert write.params["disk"] == "/dev/vda"  # blank target disk: the first disk the agent reported
    # The wipe of the image's disk names the image, so the agent refuses one that cannot fit before wiping.
    assert install.steps.get(task="wipe_disks").params["image_url"] == lab.image_profile().image_url
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.VERIFYING
    assert lab.per_mac_files(machine) == []
    assert callbacks.agent_next_task(install.pk) == {"task": None, "finished": True}
    callbacks.installer_event(install.pk, "finished", "first boot")
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.SUCCEEDED
    assert Machine_facts(machine) == facts


def Machine_facts(machine):
    machine.refresh_from_db()
    return machine.facts


def test_agent_on_the_wrong_machine_is_refused_and_the_install_fails_safe(lab):
    machine = lab.machine()
    install = lab.install([machine], lab.image_profile())
    lab.run_jobs()
    with pytest.raises(callbacks.WrongMachine, match=f"booted on a machine that is not {machine.hostname}"):
        callbacks.agent_register(install.pk, {"nics": [{"mac": "52:54:00:ff:ff:01"}]})
    install.refresh_from_db()
    assert install.state == InstallState.FAILED and install.failure_reason == "WrongMachine"
    assert not install.steps.filter(kind=StepKind.AGENT_TASK, attempts__gt=0).exists()
    assert AuditEntry.objects.filter(action="agent.refused", object_id=str(install.pk)).exists()
    lab.run_jobs()
    assert lab.per_mac_files(machine) == []


def test_agent_task_failure_fails_the_install_with_its_reason(lab):
    machine = lab.machine()
    install = lab.install([machine], lab.image_profile())
    lab.run_jobs()
    facts = {"nics": [{"mac": machine.pxe_nic.mac}], "disks": [{"path": "/dev/vda", "size_bytes": 10}]}
    callbacks.agent_register(install.pk, facts)
    task = callbacks.agent_next_task(install.pk)["task"]
    callbacks.agent_result(install.pk, task["id"], True, "", "", "")
    task = callbacks.agent_next_task(install.pk)["task"]
    assert task["kind"] == "write_image"
    callbacks.agent_result(install.pk, task["id"], False, "ImageChecksumMismatch", "sha256 differs", "")
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "ImageChecksumMismatch")
    assert "sha256 differs" in install.failure_message
    assert Alert.objects.get(install=install).reason == "ImageChecksumMismatch"


def test_duplicate_advance_jobs_are_harmless(lab):
    machine = lab.machine()
    install = lab.install([machine])
    for _ in range(3):
        engine.advance(install.pk)
    lab.run_jobs()
    engine.advance(install.pk)
    install.refresh_from_db()
    assert install.state == InstallState.BOOTING
    assert lab.bmc(machine).boots == [BootDevice.PXE]  # powered on once, not three times
    assert install.steps.get(kind=StepKind.POWER_CYCLE).attempts == 1


def test_transient_bmc_errors_retry_with_backoff_then_proceed(lab):
    machine = lab.machine()
    lab.bmc(machine).fault = "unreachable"
    install = lab.install([machine])
    lab.run_jobs(scheduled=False)
    step = install.steps.get(kind=StepKind.CHECK_BMC)
    assert (step.state, step.attempts) == (StepState.PENDING, 1) and step.not_before is not None
    event = Event.objects.filter(install=install, step=step).last()
    assert "retrying in" in event.message and event.data["reason"] == "BmcUnreachable"
    lab.bmc(machine).fault = None
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.BOOTING
    assert install.steps.get(kind=StepKind.CHECK_BMC).attempts == 2


def test_transient_errors_give_up_after_the_limit(lab, settings):
    settings.STEP_MAX_ATTEMPTS = 3
    machine = lab.machine()
    lab.bmc(machine).fault = "unreachable"
    install = lab.install([machine])
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.FAILED and install.failure_reason == "BmcUnreachable", [
        e.message for e in install.events.all()
    ]
    assert "Gave up after 3 attempts" in install.failure_message
    assert install.steps.get(kind=StepKind.CHECK_BMC).attempts == 3


def test_authentication_errors_are_never_retried(lab):
    machine = lab.machine()
    lab.bmc(machine).fault = "auth"
    install = lab.install([machine])
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.FAILED and install.failure_reason == "BmcAuthError"
    assert "rejected the username or password" in install.failure_message
    assert install.steps.get(kind=StepKind.CHECK_BMC).attempts == 1
    assert Event.objects.filter(install=install, message__contains="retrying").count() == 0


def test_deadline_expiry_fails_the_install_and_removes_the_boot_config(lab):
    machine = lab.machine()
    install = lab.install([machine])
    lab.run_jobs()
    assert lab.per_mac_files(machine)
    Step.objects.filter(install=install, kind=StepKind.WAIT_BOOT).update(deadline_at=timezone.now())
    assert sweep()["expired"] == 1
    lab.run_jobs()
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "BootTimeout")
    assert "did not start the installer or agent" in install.failure_message
    assert lab.per_mac_files(machine) == []
    assert lab.bmc(machine).boot_device == BootDevice.DISK
    machine.refresh_from_db()
    assert machine.status == "failed"


def _bring_to(lab, stop_at):
    """An install of a new machine, moved to ``stop_at`` the way a real one gets there."""
    if stop_at == "queued":
        first, machine = lab.machine(), lab.machine()
        return machine, lab.install([first, machine], max_per_site=1)[1]
    machine = lab.machine()
    install = lab.install([machine], lab.image_profile() if stop_at == "verifying" else None)
    if stop_at == "preparing":
        return machine, install
    lab.run_jobs()
    if stop_at == "verifying":
        facts = {"nics": [{"mac": machine.pxe_nic.mac}], "disks": [{"path": "/dev/vda", "size_bytes": 10}]}
        callbacks.agent_register(install.pk, facts)
        while task := callbacks.agent_next_task(install.pk)["task"]:
            callbacks.agent_result(install.pk, task["id"], True, "", "", "")
        lab.run_jobs()
    elif stop_at in ("installing", "finalizing"):
        callbacks.installer_event(install.pk, "started")
        lab.run_jobs()
        if stop_at == "finalizing":
            lab.bmc(machine).fault = "unreachable"  # setting the boot device to disk keeps failing
            callbacks.installer_event(install.pk, "finished")
            lab.run_jobs(scheduled=False)
            lab.bmc(machine).fault = None
    return machine, install


@pytest.mark.parametrize("stop_at", ["queued", "preparing", "booting", "installing", "finalizing", "verifying"])
def test_cancel_from_each_state_removes_the_per_mac_config(lab, stop_at):
    machine, install = _bring_to(lab, stop_at)
    install.refresh_from_db()
    assert install.state == stop_at
    engine.cancel(install.pk, actor=Actor.system("alice"), why="wrong rack")
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.CANCELLED and install.cancelled_by_label == "alice"
    assert install.failure_message == "Cancelled by alice: wrong rack"
    assert lab.per_mac_files(machine) == []
    assert lab.bmc(machine).boot_device in (BootDevice.DISK, BootDevice.DEFAULT)  # never left on network boot
    assert not install.steps.exclude(state__in=["succeeded", "failed", "skipped"]).exists()
    assert AuditEntry.objects.filter(object_id=str(install.pk), details__to="cancelled").get().actor_label == "alice"
    with pytest.raises(engine.StaleTransition):
        engine.cancel(install.pk, actor=Actor.system("alice"))


def test_protected_machines_refuse_install(lab):
    machine = lab.machine(protected=True)
    with pytest.raises(InstallRefused, match=f"Protected, install refused: {machine.hostname}"):
        lab.install([machine])
    assert not Install.objects.exists()


def test_a_second_request_names_the_install_holding_the_machine(lab):
    machine = lab.machine()
    first = lab.install([machine])
    with pytest.raises(InstallRefused) as exc:
        lab.install([machine])
    message = exc.value.args[0][0]
    assert f"{machine.hostname} is already being installed: install {first.pk}" in message
    assert "started by test at" in message


def test_the_database_allows_one_active_install_per_machine(lab):
    from django.db import IntegrityError

    machine = lab.machine()
    first = lab.install([machine])
    with pytest.raises(IntegrityError, match="install_one_active_per_machine"):
        Install.objects.create(
            machine=machine, profile=first.profile, plan=first.plan, token_nonce="x", boot_token_hash="y"
        )


def _end_by(lab, machine, install, how):
    if how == "success":
        callbacks.installer_event(install.pk, "started")
        callbacks.installer_event(install.pk, "finished")
    elif how == "failure":
        callbacks.installer_event(install.pk, "failed", "disk not found")
    elif how == "cancel":
        engine.cancel(install.pk, actor=Actor.system("test"))
    elif how == "deadline":
        Step.objects.filter(install=install, kind=StepKind.WAIT_BOOT).update(deadline_at=timezone.now())
        sweep()
    elif how == "worker_lost":
        # The worker died running "remove the per-MAC config" for the last time allowed.
        callbacks.installer_event(install.pk, "started")
        callbacks.installer_event(install.pk, "finished")
        Step.objects.filter(install=install, kind=StepKind.REMOVE_BOOT_CONFIG).update(
            state=StepState.RUNNING, attempts=99, deadline_at=timezone.now()
        )
        sweep()
    lab.run_jobs()


@pytest.mark.parametrize(
    "how, status, state",
    [
        ("success", "deployed", InstallState.SUCCEEDED),
        ("failure", "failed", InstallState.FAILED),
        ("cancel", "failed", InstallState.CANCELLED),
        ("deadline", "failed", InstallState.FAILED),
        ("worker_lost", "failed", InstallState.FAILED),
    ],
)
def test_however_an_install_ends_the_machine_cannot_reinstall_by_accident(lab, how, status, state):
    """The one invariant: per-MAC config gone, BMC not left on network boot, status says what happened."""
    machine = lab.machine()
    install = lab.install([machine])
    lab.run_jobs()
    assert lab.per_mac_files(machine) and lab.bmc(machine).boots == [BootDevice.PXE]
    _end_by(lab, machine, install, how)
    install.refresh_from_db()
    machine.refresh_from_db()
    assert install.state == state, (install.failure_reason, install.failure_message)
    assert lab.per_mac_files(machine) == []
    assert lab.bmc(machine).boot_device == BootDevice.DISK
    assert machine.status == status
    assert (lab.tftp_root / "pxelinux.cfg").exists()  # only the machine's own files went


def test_a_job_runs_at_most_its_step_limit_and_leaves_the_next_step_to_a_fresh_job(lab, monkeypatch):
    monkeypatch.setattr(engine, "MAX_STEPS_PER_JOB", 2)
    install = lab.install([lab.machine()])
    assert engine.advance(install.pk) == "continued"
    steps = {s.kind: s for s in install.steps.all()}
    assert steps[StepKind.CHECK_BMC].state == steps[StepKind.WRITE_BOOT_CONFIG].state == StepState.SUCCEEDED
    # Not claimed and handed back: untouched, its attempt not counted.
    assert steps[StepKind.SET_BOOT_PXE].state == StepState.PENDING and steps[StepKind.SET_BOOT_PXE].attempts == 0
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.BOOTING


def test_a_step_moves_only_as_the_step_transitions_table_allows(lab):
    install = lab.install([lab.machine()])
    lab.run_jobs()
    with transaction.atomic():
        locked = engine.lock(install.pk)
        done = locked.steps.get(kind=StepKind.CHECK_BMC)
        with pytest.raises(engine.InvalidTransition):
            engine.move_step(locked, done, StepState.RUNNING)
    done.refresh_from_db()
    assert done.state == StepState.SUCCEEDED and done.attempts == 1
