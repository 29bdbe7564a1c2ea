"""The install state machine: service functions that move installs, and the RQ jobs that call them.

Every change to an install or its steps happens with the install row locked, is checked against
TRANSITIONS, writes its audit entry and event in the same transaction, and registers its side
effects (jobs, websocket messages) with on_commit. Jobs take primary keys, re-read the row and
return quietly when the install has moved on: duplicate and late deliveries are normal.

No job waits for a machine. A worker step makes one short BMC call or file write; a wait step
puts the install in a waiting state with a deadline, and the sweeper fails what overstays.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq import Retry
from rq.exceptions import DuplicateJobError

from audit.service import Actor, record
from core import queues
from inventory.models import MachineStatus

from . import plan as plans
from . import steps as runners
from .events import emit
from .models import (
    ACTIVE_STATES,
    STEP_DONE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    EventKind,
    Install,
    InstallState,
    Step,
    StepKind,
    StepState,
)

log = logging.getLogger(__name__)

SYSTEM = Actor.system("engine")
# Consecutive worker steps run in one job (they are short); bounded so one install cannot hog a worker.
MAX_STEPS_PER_JOB = 20


class EngineError(Exception):
    pass


class StaleTransition(EngineError):
    """The install is no longer in the state the caller expected: a duplicate or late delivery."""


class InvalidTransition(EngineError):
    """The transitions table does not allow this move."""


# --- jobs and side effects ------------------------------------------------------------------


def _site_queue(install: Install):
    return queues.site_queue(install.plan["site"]["slug"])


def enqueue_advance(install: Install, delay_s: float = 0) -> None:
    """Register a job that moves the install on, once the current transaction commits."""
    install_id, queue = install.pk, _site_queue(install)

    def enqueue():
        job_id = f"install-{install_id}-advance-{time.time_ns()}"
        kwargs = {"job_id": job_id, "result_ttl": 0, "failure_ttl": 7 * 86400}
        if delay_s > 0:
            queue.enqueue_in(timedelta(seconds=delay_s), advance, install_id, **kwargs)
        else:
            queue.enqueue(advance, install_id, **kwargs)

    queues.on_commit(f"install {install_id}: its next step", enqueue)


def _enqueue_cleanup(install: Install) -> None:
    install_id, queue = install.pk, _site_queue(install)
    queues.on_commit(
        f"install {install_id}: its cleanup",
        lambda: queue.enqueue(
            cleanup,
            install_id,
            job_id=f"install-{install_id}-cleanup-{time.time_ns()}",
            retry=Retry(max=5, interval=[5, 15, 30, 60, 120]),
            result_ttl=0,
            failure_ttl=7 * 86400,
        ),
    )


def enqueue_lost_cleanup(install: Install) -> bool:
    """The sweeper's: queue the cleanup of an ended install whose cleanup never ran (its job was lost with
    Redis or a worker). One such job at a time per install. True if queued now."""
    try:
        _site_queue(install).enqueue(
            cleanup, install.pk, job_id=f"install-{install.pk}-cleanup-lost", unique=True, result_ttl=0,
            failure_ttl=60,
        )  # fmt: skip
    except DuplicateJobError:
        return False
    return True


# --- transitions ----------------------------------------------------------------------------


def lock(install_id: int) -> Install:
    return Install.objects.select_for_update(no_key=True).select_related("machine").get(pk=install_id)


def set_state(install: Install, to: str, *, actor: Actor = SYSTEM, reason: str = "", message: str = "") -> None:
    """Move a locked install to ``to``, as the transitions table allows."""
    frm = install.state
    if to not in TRANSITIONS[frm]:
        raise InvalidTransition(f"install {install.pk}: {frm} → {to} is not allowed")
    now = timezone.now()
    install.state = to
    install.state_changed_at = now
    fields = ["state", "state_changed_at"]
    if frm == InstallState.QUEUED:
        install.started_at = now
        fields.append("started_at")
    if to in TERMINAL_STATES:
        install.finished_at = now
        install.deadline_at = None
        install.failure_reason = reason
        install.failure_message = message
        fields += ["finished_at", "deadline_at", "failure_reason", "failure_message"]
        if to == InstallState.SUCCEEDED:
            install.progress = 100
            fields.append("progress")
    install.save(update_fields=fields)
    details = {"from": frm, "to": to}
    if reason:
        details.update(reason=reason, message=message)
    record(actor, "install.transition", install, details)
    emit(install, EventKind.STATE, message or f"{frm} → {to}", data=details)


@transaction.atomic(durable=True)
def transition(install_id: int, *, to: str, expect: str, actor: Actor = SYSTEM, reason: str = "", message: str = ""):
    """The public, checked transition: raises StaleTransition when the install moved on."""
    install = lock(install_id)
    if install.state != expect:
        raise StaleTransition(f"install {install_id} is {install.state}, not {expect}")
    if to in TERMINAL_STATES:
        _end(install, to, actor=actor, reason=reason, message=message)
    else:
        set_state(install, to, actor=actor, reason=reason, message=message)
    return install


def _machine_status_after(install: Install, to: str) -> str:
    if to == InstallState.SUCCEEDED:
        return MachineStatus.DEPLOYED
    if to == InstallState.CANCELLED and not install.steps.filter(kind=StepKind.POWER_CYCLE, attempts__gt=0).exists():
        return MachineStatus.READY  # nothing touched the machine yet
    return MachineStatus.FAILED


def _end(install: Install, to: str, *, actor: Actor, reason: str = "", message: str = "") -> None:
    """End a locked, active install: skip what is left, record why, clean up after commit."""
    now = timezone.now()
    install.steps.exclude(state__in=STEP_DONE_STATES).update(state=StepState.SKIPPED, finished_at=now)
    set_state(install, to, actor=actor, reason=reason, message=message)
    if to == InstallState.CANCELLED:
        install.cancelled_by_label = actor.label
        install.save(update_fields=["cancelled_by_label"])
    install.machine.status = _machine_status_after(install, to)
    install.machine.save(update_fields=["status"])
    if to == InstallState.FAILED:
        from .alerts import raise_alert

        raise_alert(install, reason, message)
    _enqueue_cleanup(install)
    if install.batch_id:
        from .batches import admit

        batch_id = install.batch_id
        queues.on_commit(f"batch {batch_id}: admission", lambda: admit(batch_id))


def fail(install: Install, reason: str, message: str, *, step: Step | None = None, actor: Actor = SYSTEM) -> None:
    """Fail a locked install (and its current step) with a CamelCase reason and a message for people."""
    if install.state in TERMINAL_STATES:
        return
    if step is not None:
        step.state = StepState.FAILED
        step.finished_at = timezone.now()
        step.message = message[:500]
        step.result = {**step.result, "reason": reason}
        step.save(update_fields=["state", "finished_at", "message", "result"])
        emit(install, EventKind.STEP, f"{step.label} failed: {message}", step=step, data={"reason": reason})
    _end(install, InstallState.FAILED, actor=actor, reason=reason, message=message)


@transaction.atomic(durable=True)
def cancel(install_id: int, *, actor: Actor, why: str = "") -> Install:
    install = lock(install_id)
    if install.state in TERMINAL_STATES:
        raise StaleTransition(f"install {install_id} already ended ({install.state})")
    message = f"Cancelled by {actor.label}" + (f": {why}" if why else ".")
    _end(install, InstallState.CANCELLED, actor=actor, reason="Cancelled", message=message)
    return install


# --- moving through the steps ---------------------------------------------------------------


def current_step(install: Install) -> Step | None:
    return install.steps.exclude(state__in=STEP_DONE_STATES).order_by("order").first()


def _enter(install: Install, step: Step) -> None:
    """Bring the install's state to the phase of ``step``."""
    phase = plans.PHASE[step.kind]
    if install.state != phase:
        set_state(install, phase)
    if install.current_step != step.label:
        install.current_step = step.label
        install.save(update_fields=["current_step"])


def _progress(install: Install, step: Step) -> None:
    """Steps run in order, so the share done is the share of the plan up to this step."""
    total = install.plan.get("step_count") or install.steps.count()
    install.progress = min(99, int(100 * (step.order + 1) / max(1, total)))
    install.save(update_fields=["progress"])


def _deadline_for(install: Install, step: Step) -> float:
    if step.kind == StepKind.WAIT_BOOT:
        return settings.INSTALL_BOOT_DEADLINE_S
    if step.kind == StepKind.WAIT_INSTALLER:
        return settings.INSTALL_INSTALLER_DEADLINE_S
    if step.kind == StepKind.AGENT_TASK:
        return settings.INSTALL_AGENT_TASK_DEADLINE_S
    return settings.INSTALL_VERIFY_DEADLINE_S


def _succeed_step(install: Install, step: Step, result: dict, message: str = "") -> None:
    step.state = StepState.SUCCEEDED
    step.finished_at = timezone.now()
    step.deadline_at = None
    step.progress = 100
    step.result = result
    step.message = message[:500]
    step.save(update_fields=["state", "finished_at", "deadline_at", "progress", "result", "message"])
    if install.deadline_at is not None:
        install.deadline_at = None
        install.save(update_fields=["deadline_at"])
    _progress(install, step)
    emit(install, EventKind.STEP, f"{step.label}: done" + (f" ({message})" if message else ""), step=step)


def advance(install_id: int) -> str:
    """RQ job: run the install's next worker steps, or put it into its next wait. Idempotent."""
    claimed = _claim(install_id)
    for _ in range(MAX_STEPS_PER_JOB):
        if not isinstance(claimed, tuple):
            return claimed
        install, step = claimed
        try:
            result = runners.RUNNERS[step.kind](install, step)
            error = None
        except runners.StepFailed as exc:
            result, error = None, exc
        except Exception as exc:  # a bug, not a machine problem: fail with the facts, never hang
            log.exception("step %s of install %s crashed", step.kind, install_id)
            result, error = None, runners.StepFailed("InternalError", f"{step.label} crashed: {exc!r}")
        claimed = _settle(install_id, step.pk, step.attempts, result, error)
    if isinstance(claimed, tuple):  # the step limit: hand the rest to a fresh job
        with transaction.atomic():
            install, step = claimed
            Step.objects.filter(pk=step.pk).update(state=StepState.PENDING, attempts=step.attempts - 1)
            enqueue_advance(install)
        return "continued"
    return claimed


@transaction.atomic
def _claim(install_id: int):
    return _claim_locked(lock(install_id))


def _claim_locked(install: Install):
    """Pick the next step of a locked install. Returns (install, step) for a worker step now marked
    running, or a word saying why there is nothing to run."""
    if install.state not in ACTIVE_STATES or install.state == InstallState.QUEUED:
        return "not active"
    step = current_step(install)
    if step is None:
        _end(install, InstallState.SUCCEEDED, actor=SYSTEM)
        return "succeeded"
    if step.state != StepState.PENDING:
        return f"{step.kind} is {step.state}"
    now = timezone.now()
    if step.not_before and step.not_before > now:
        # Early (clock skew between the scheduler's host and the database's): come back then.
        enqueue_advance(install, delay_s=(step.not_before - now).total_seconds())
        return "not yet"
    kind = plans.executor(step.kind, install.plan)
    _enter(install, step)
    if kind == plans.AGENT:
        return "agent's turn"  # handed out when the agent asks (agent_next_task)
    if kind == plans.WAIT:
        early = step.result.get("answered_early")
        if early:  # the machine was faster than the worker that woke it
            step.started_at = now
            _succeed_step(install, step, step.result, early["message"] or "answered before the wait began")
            enqueue_advance(install)
            return "answered early"
        deadline = now + timedelta(seconds=_deadline_for(install, step))
        step.state, step.started_at, step.deadline_at = StepState.WAITING, now, deadline
        step.save(update_fields=["state", "started_at", "deadline_at"])
        install.deadline_at = deadline
        install.save(update_fields=["deadline_at"])
        emit(install, EventKind.STEP, f"{step.label}: waiting until {deadline:%H:%M:%S} UTC", step=step)
        return "waiting"
    if step.kind == StepKind.POWER_CYCLE and install.batch_id and not step.not_before:
        from .batches import reserve_power_on

        slot_s = reserve_power_on(install)
        if slot_s > 0.05:
            step.not_before = now + timedelta(seconds=slot_s)
            step.save(update_fields=["not_before"])
            emit(install, EventKind.STEP, f"{step.label}: staggered, in {slot_s:.0f} s", step=step)
            enqueue_advance(install, delay_s=slot_s)
            return "staggered"
    step.state = StepState.RUNNING
    step.attempts += 1
    step.started_at = step.started_at or now
    step.deadline_at = now + timedelta(seconds=settings.STEP_RUN_TIMEOUT_S)
    step.save(update_fields=["state", "attempts", "started_at", "deadline_at"])
    return install, step


def _backoff_s(attempt: int) -> float:
    base = min(settings.STEP_RETRY_MAX_S, settings.STEP_RETRY_BASE_S * 2 ** (attempt - 1))
    return base * random.uniform(0.8, 1.2)  # jitter: a rack of failed BMCs must not retry in lockstep


@transaction.atomic
def _settle(install_id: int, step_id: int, attempt: int, result: dict | None, error) -> str:
    install = lock(install_id)
    step = Step.objects.get(pk=step_id)
    if step.state != StepState.RUNNING or step.attempts != attempt:
        # Cancelled, failed or swept while we ran. The step may have re-armed a boot config or
        # network boot after the cleanup ran: clean up again (idempotent).
        if install.state in TERMINAL_STATES:
            _enqueue_cleanup(install)
        return "superseded"
    if error is None and (result or {}).get("skipped"):
        step.state, step.finished_at, step.message = StepState.SKIPPED, timezone.now(), result["skipped"][:500]
        step.save(update_fields=["state", "finished_at", "message"])
        emit(install, EventKind.STEP, f"{step.label}: {result['skipped']}", step=step)
        return _claim_locked(install)
    if error is None:
        _succeed_step(install, step, result or {})
        return _claim_locked(install)  # the next step, in the same transaction
    if error.retryable and step.attempts < settings.STEP_MAX_ATTEMPTS:
        delay = _backoff_s(step.attempts)
        step.state = StepState.PENDING
        step.not_before = timezone.now() + timedelta(seconds=delay)
        step.deadline_at = None
        step.message = error.message[:500]
        step.save(update_fields=["state", "not_before", "deadline_at", "message"])
        emit(
            install,
            EventKind.STEP,
            f"{step.label}: attempt {step.attempts} of {settings.STEP_MAX_ATTEMPTS} failed ({error.message}); "
            f"retrying in {delay:.0f} s",
            step=step,
            data={"reason": error.reason, "retry_in_s": round(delay, 1)},
        )
        enqueue_advance(install, delay_s=delay)
        return "retry"
    if error.retryable:
        message = f"{error.message} Gave up after {step.attempts} attempts."
    else:
        message = error.message
    fail(install, error.reason, message, step=step)
    return "failed"


def complete_wait(install: Install, kinds: tuple[str, ...], message: str = "", result: dict | None = None) -> bool:
    """End the current wait step if it is one of ``kinds`` (install locked). Returns False when it
    is not waiting there (a late or duplicate callback: harmless)."""
    step = current_step(install)
    if step is not None and step.kind not in kinds:
        return _answered_early(install, step, kinds, message)
    if step is None or step.state not in (StepState.WAITING, StepState.PENDING):
        return False
    if plans.executor(step.kind, install.plan) != plans.WAIT:
        return False
    if step.started_at is None:
        step.started_at = timezone.now()
    _enter(install, step)
    _succeed_step(install, step, result or {}, message)
    enqueue_advance(install)
    return True


def _answered_early(install: Install, running: Step, kinds: tuple[str, ...], message: str) -> bool:
    """The machine answered while the worker step that woke it (the power cycle, the reboot) is still
    running: the answer is kept on the wait that follows, which ends as soon as it begins. Only for the
    step right after a running one: any other answer is late or stray, as before."""
    if running.state != StepState.RUNNING:
        return False
    following = install.steps.filter(order=running.order + 1).first()
    if following is None or following.kind not in kinds or following.state != StepState.PENDING:
        return False
    if plans.executor(following.kind, install.plan) != plans.WAIT:
        return False
    following.result = {**following.result, "answered_early": {"at": timezone.now().isoformat(), "message": message}}
    following.save(update_fields=["result"])
    return True


# --- cleanup ----------------------------------------------------------------------------------


def cleanup(install_id: int) -> str:
    """RQ job, after an install ends however it ends: the per-MAC boot config is gone and the
    BMC's one-time boot no longer points at the network. Idempotent; RQ retries it on failure."""
    from provisioner import pxe

    install = Install.objects.select_related("machine").get(pk=install_id)
    newer = Install.objects.filter(machine_id=install.machine_id, state__in=ACTIVE_STATES).exclude(pk=install_id)
    if newer.exists():
        # Late (a lost job queued again): the machine's boot config and boot device belong to its new
        # install now, and removing them would make that one fail.
        Install.objects.filter(pk=install_id, cleaned_at__isnull=True).update(cleaned_at=timezone.now())
        return "a newer install owns the machine's boot config"
    removed = pxe.remove(install.plan["site"]["tftp_root"], install.plan["machine"]["mac"])
    Install.objects.filter(pk=install_id, cleaned_at__isnull=True).update(cleaned_at=timezone.now())
    armed = install.steps.filter(kind=StepKind.SET_BOOT_PXE, attempts__gt=0).exists()
    disk_set = install.steps.filter(kind=StepKind.SET_BOOT_DISK, state=StepState.SUCCEEDED).exists()
    notes = []
    if removed:
        notes.append("per-MAC boot config removed")
    if armed and not disk_set:
        try:
            runners.set_boot_disk(install, None)
        except runners.StepFailed as exc:
            with transaction.atomic():
                emit(install, EventKind.ALERT, f"Could not reset the boot device to disk: {exc.message}")
            if exc.retryable:
                raise  # RQ retries with backoff
            return "boot device not reset"
        notes.append("boot device reset to disk")
    if notes:
        with transaction.atomic():
            emit(install, EventKind.STEP, "Cleanup: " + ", ".join(notes) + ".")
    return ", ".join(notes) or "nothing to clean"
