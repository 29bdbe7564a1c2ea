"""The install state machine: service functions that move installs, and the RQ jobs that call them.

Every change to an install or its steps happens with the install row locked, is checked against
TRANSITIONS (``set_state``) or STEP_TRANSITIONS (``move_step``, the one writer of a step's state),
writes its audit entry and event in the same transaction, and registers its side effects (jobs,
websocket messages) with on_commit. What a step kind is (its phase, who moves it on, its runner, its
deadline) comes from installs/stepkinds.py. Jobs take primary keys, re-read the row and
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
from django.dispatch import Signal
from django.utils import timezone
from rq import Retry
from rq.exceptions import DuplicateJobError

from audit.service import Actor, record
from core import queues
from inventory import lifecycle, power
from inventory.models import MachineStatus, Site
from provisioner.bmc import Capability
from provisioner.pxe import iso

from . import discovery_boot, media
from . import steps as runners
from .alerts import raise_alert, raise_machine_alert
from .events import emit
from .models import EventKind, Install, Purpose, Step
from .stagger import reserve_power_on
from .states import (
    ACTIVE_STATES,
    STEP_DONE_STATES,
    STEP_STARTED_STATES,
    STEP_TRANSITIONS,
    TERMINAL_STATES,
    TRANSITIONS,
    InstallState,
    StepState,
)
from .stepkinds import KINDS, Mover, StepKind

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


# Sent inside the transaction that ends an install (``install=``): installs/batches.py admits the next
# installs of its batch. A signal, because admission starts installs through this module.
install_ended = Signal()


# --- jobs and side effects ------------------------------------------------------------------


def _site_queue(install: Install):
    return queues.site_queue(install.plan.site.slug)


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


def set_state(
    install: Install, to: str, *, actor: Actor = SYSTEM, reason: str = "", message: str = "", logged: bool = False
) -> None:
    """Move a locked install to ``to``, as the transitions table allows. ``logged``: the log already holds
    ``message`` (the failed step's line), so the state line names the reason without repeating the sentence."""
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
    line = f"{frm} → {to}" + (f" ({reason})" if reason else "")
    emit(install, EventKind.STATE, line if logged or not message else f"{line}: {message}", data=details)


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


def _machine_status_after(install: Install, to: str) -> tuple[str, str]:
    """Where the operation leaves the machine in its lifecycle, and why (for broken and failed)."""
    purpose = install.purpose
    if to == InstallState.SUCCEEDED:
        if purpose == Purpose.TEST:
            failed = [s.label for s in install.steps.filter(state=StepState.FAILED).order_by("order")]
            if failed:
                return MachineStatus.BROKEN, f"Hardware test failed ({install}): {', '.join(failed)}."
        return (MachineStatus.DEPLOYED if purpose == Purpose.DEPLOY else MachineStatus.READY), ""
    if to == InstallState.CANCELLED and not install.steps.filter(kind=StepKind.POWER_CYCLE, attempts__gt=0).exists():
        # nothing touched the machine yet: back where it was
        return install.machine_status_before or MachineStatus.READY, install.machine.status_reason
    return MachineStatus.FAILED, f"{install.get_purpose_display()} failed ({install}): {install.failure_message}"


def _settle_machine(install: Install, to: str, actor: Actor) -> None:
    status, reason = _machine_status_after(install, to)
    machine = install.machine
    try:
        lifecycle.move(machine, status, actor, reason=reason, cause=f"install {install.pk} {to}")
    except lifecycle.LifecycleRefused:
        # A person moved it meanwhile (e.g. into maintenance) to where this outcome cannot follow: theirs stands.
        log.info("install %s ended %s; %s stays %s", install.pk, to, machine.hostname, machine.status)
        return
    if status == MachineStatus.BROKEN:
        raise_machine_alert(machine, "HardwareTestFailed", reason)


def _final_step(install: Install, to: str, failed: Step | None) -> str:
    """The step a finished install shows as its own: the one it failed at or was cancelled during, or, when it
    succeeded, the last one that ran (a skipped check after it is not where it ended)."""
    if failed is not None:
        return failed.label
    if to != InstallState.SUCCEEDED:
        during = current_step(install)
        if during is not None:
            return during.label
    ran = install.steps.filter(state__in=(StepState.SUCCEEDED, StepState.FAILED)).order_by("-order").first()
    return ran.label if ran is not None else ""


def _end(
    install: Install,
    to: str,
    *,
    actor: Actor,
    reason: str = "",
    message: str = "",
    failed: Step | None = None,
) -> None:
    """End a locked, active install: skip what is left, record why, clean up after commit. ``failed``: the step
    it failed at, whose log line already says ``message``."""
    final = _final_step(install, to, failed)
    if install.current_step != final:
        install.current_step = final
        install.save(update_fields=["current_step"])
    skip_remaining(install)
    set_state(install, to, actor=actor, reason=reason, message=message, logged=failed is not None)
    if to == InstallState.CANCELLED:
        install.cancelled_by_label = actor.label
        install.save(update_fields=["cancelled_by_label"])
    _settle_machine(install, to, actor)
    if to == InstallState.FAILED:
        raise_alert(install, reason, message)
    _enqueue_cleanup(install)
    install_ended.send(sender=Install, install=install)


def fail(install: Install, reason: str, message: str, *, step: Step | None = None, actor: Actor = SYSTEM) -> None:
    """Fail a locked install (and its current step) with a CamelCase reason and a message for people."""
    if install.state in TERMINAL_STATES:
        return
    if step is not None:
        move_step(install, step, StepState.FAILED, message=message, result={**step.result, "reason": reason})
        emit(install, EventKind.STEP, f"{step.label} failed: {message}", step=step, data={"reason": reason})
    _end(install, InstallState.FAILED, actor=actor, reason=reason, message=message, failed=step)


@transaction.atomic(durable=True)
def cancel(install_id: int, *, actor: Actor, why: str = "") -> Install:
    install = lock(install_id)
    if install.state in TERMINAL_STATES:
        raise StaleTransition(f"install {install_id} already ended ({install.state})")
    message = f"Cancelled by {actor.label}" + (f": {why}" if why else ".")
    _end(install, InstallState.CANCELLED, actor=actor, reason="Cancelled", message=message)
    return install


# --- moving steps ---------------------------------------------------------------------------


def move_step(
    install: Install,
    step: Step,
    to: str,
    *,
    message: str | None = None,
    result: dict | None = None,
    params: dict | None = None,
    not_before=None,
) -> None:
    """Move a step of the locked ``install`` to ``to``, as STEP_TRANSITIONS allows: the one writer of a
    step's state. Keeps its timestamps, its attempt count and deadline (from the step kinds table), and
    the install's deadline shown to people."""
    frm = step.state
    if to not in STEP_TRANSITIONS[frm]:
        raise InvalidTransition(f"step {step.pk} ({step.kind}) of install {install.pk}: {frm} → {to} is not allowed")
    now = timezone.now()
    step.state = to
    fields = ["state"]
    if to in STEP_STARTED_STATES:
        if to in (StepState.RUNNING, StepState.DISPATCHED):  # a new attempt; a wait is not retried
            step.attempts += 1
            fields.append("attempts")
        # A retried worker step keeps its first start; a wait or an agent task starts now.
        step.started_at = (step.started_at or now) if to == StepState.RUNNING else now
        mover = Mover.WORKER if to == StepState.RUNNING else Mover.WAIT
        timeout_s = (step.policy or {}).get("timeout_s") if mover == Mover.WAIT else None
        step.deadline_at = now + timedelta(seconds=timeout_s or KINDS[step.kind].deadline_s(mover))
        fields += ["started_at", "deadline_at"]
    elif step.deadline_at is not None:
        step.deadline_at = None
        fields.append("deadline_at")
    if to in STEP_DONE_STATES:
        step.finished_at = now
        fields.append("finished_at")
    if to == StepState.SUCCEEDED:
        if step.started_at is None:  # answered before its wait began
            step.started_at = now
            fields.append("started_at")
        step.progress = 100
        fields.append("progress")
    for name, value in (("message", message and message[:500]), ("result", result), ("params", params)):
        if value is not None:
            setattr(step, name, value)
            fields.append(name)
    if not_before is not None:
        step.not_before = not_before
        fields.append("not_before")
    step.save(update_fields=fields)
    if to in (StepState.WAITING, StepState.DISPATCHED):
        # Several tasks of a parallel stage may be out at once: the install shows the nearest deadline.
        if install.deadline_at is None or step.deadline_at < install.deadline_at or not step.parallel:
            install.deadline_at = step.deadline_at
            install.save(update_fields=["deadline_at"])
    elif to in STEP_DONE_STATES and install.deadline_at is not None:
        nearest = (
            install.steps.filter(state__in=(StepState.WAITING, StepState.DISPATCHED))
            .exclude(pk=step.pk)
            .order_by("deadline_at")
            .values_list("deadline_at", flat=True)
            .first()
        )
        if install.deadline_at != nearest:
            install.deadline_at = nearest
            install.save(update_fields=["deadline_at"])


def skip_remaining(install: Install) -> None:
    """The install of these steps ended: every step not done is skipped (move_step, for all at once)."""
    skippable = [state for state, then in STEP_TRANSITIONS.items() if StepState.SKIPPED in then]
    install.steps.filter(state__in=skippable).update(
        state=StepState.SKIPPED, finished_at=timezone.now(), deadline_at=None
    )


def current_step(install: Install) -> Step | None:
    """The first step not done: in a parallel stage, the first of those running at once."""
    return install.steps.exclude(state__in=STEP_DONE_STATES).order_by("order").first()


def current_steps(install: Install) -> list[Step]:
    """The steps that may run now: the first step not done, or, when it belongs to a parallel stage, every
    step of that stage not done."""
    first = current_step(install)
    if first is None:
        return []
    if not first.parallel:
        return [first]
    return list(install.steps.filter(stage=first.stage).exclude(state__in=STEP_DONE_STATES).order_by("order"))


def mover(install: Install, step: Step) -> Mover:
    """Who moves ``step`` on in this install (installs/stepkinds.py)."""
    return KINDS[step.kind].mover_for(install.plan.profile.method)


def enter(install: Install, step: Step) -> None:
    """Bring the locked install's state to the phase of ``step``, which becomes its current step."""
    phase = KINDS[step.kind].phase
    if phase is not None and install.state != phase:
        set_state(install, phase)
    if install.current_step != step.label:
        install.current_step = step.label
        install.save(update_fields=["current_step"])


def _progress(install: Install, step: Step) -> None:
    """The share of the plan's steps done."""
    total = install.plan.step_count or install.steps.count()
    done = install.steps.filter(state__in=STEP_DONE_STATES).count()
    install.progress = min(99, int(100 * done / max(1, total)))
    install.save(update_fields=["progress"])


def succeed_step(install: Install, step: Step, result: dict, message: str = "") -> None:
    """The step of the locked install is done; the caller moves the install on (enqueue_advance), or
    the same transaction claims the next step."""
    move_step(install, step, StepState.SUCCEEDED, result=result, message=message)
    _progress(install, step)
    emit(install, EventKind.STEP, f"{step.label}: done" + (f" ({message})" if message else ""), step=step)


def skip_step(install: Install, step: Step, why: str) -> None:
    """A pending step of the locked install has nothing to do here (said in ``why``): skipped, and on."""
    move_step(install, step, StepState.SKIPPED, message=why[:500], result={"skipped": why})
    _progress(install, step)
    emit(install, EventKind.STEP, f"{step.label}: skipped ({why})", step=step)
    enqueue_advance(install)


def dispatch(install: Install, step: Step, params: dict) -> None:
    """Hand the current agent step of the locked install to the agent, with its params resolved."""
    enter(install, step)
    move_step(install, step, StepState.DISPATCHED, params=params)
    emit(install, EventKind.STEP, f"{step.label}: handed to the agent", step=step)


def complete_step(install: Install, step: Step, result: dict, message: str = "") -> None:
    """The machine (an agent's result, a callback) finished the step: record it and move the install on."""
    succeed_step(install, step, result, message)
    enqueue_advance(install)


def complete_task(install: Install, step: Step, result: dict, message: str = "") -> str:
    """The agent finished a task of the locked install: record it and claim what follows in the same
    transaction. The next step is most often the agent's again (handed out when it asks) or the end, and a
    worker job only to find that out cost a site's worker two dozen round trips; a worker step that follows
    is queued as before."""
    succeed_step(install, step, result, message)
    return _claim_locked(install, may_run=False)


def advance(install_id: int) -> str:
    """RQ job: run the install's next worker steps, or put it into its next wait. Idempotent."""
    claimed = _claim(install_id)
    for ran in range(1, MAX_STEPS_PER_JOB + 1):
        if not isinstance(claimed, tuple):
            return claimed
        install, step = claimed
        try:
            result = KINDS[step.kind].run(install, step)
            error = None
        except runners.StepFailed as exc:
            result, error = None, exc
        except Exception as exc:  # a bug, not a machine problem: fail with the facts, never hang
            log.exception("step %s of install %s crashed", step.kind, install_id)
            result, error = None, runners.StepFailed("InternalError", f"{step.label} crashed: {exc!r}")
        # At the step limit the next worker step is left to a fresh job.
        claimed = _settle(install_id, step.pk, step.attempts, result, error, may_run=ran < MAX_STEPS_PER_JOB)
    return claimed


@transaction.atomic
def _claim(install_id: int):
    return _claim_locked(lock(install_id))


def _claim_locked(install: Install, *, may_run: bool = True):
    """Pick the next step of a locked install. Returns (install, step) for a worker step now marked
    running, or a word saying why there is nothing to run. Without ``may_run`` a worker step is left
    pending for a fresh job."""
    if install.state not in ACTIVE_STATES or install.state == InstallState.QUEUED:
        return "not active"
    steps = current_steps(install)
    if not steps:
        _end(install, InstallState.SUCCEEDED, actor=SYSTEM, message=_continued_note(install))
        return "succeeded"
    step = _next_pending(install, steps)
    if step is None:
        return f"{steps[0].kind} is {steps[0].state}"
    now = timezone.now()
    if step.not_before and step.not_before > now:
        # Early (clock skew between the scheduler's host and the database's): come back then.
        enqueue_advance(install, delay_s=(step.not_before - now).total_seconds())
        return "not yet"
    moved_by = mover(install, step)
    enter(install, step)
    if moved_by == Mover.AGENT:
        return "agent's turn"  # handed out when the agent asks (agent_next_task)
    if moved_by == Mover.WAIT:
        early = step.result.get("answered_early")
        if early:  # the machine was faster than the worker that woke it
            complete_step(install, step, step.result, early["message"] or "answered before the wait began")
            return "answered early"
        move_step(install, step, StepState.WAITING)
        emit(install, EventKind.STEP, f"{step.label}: waiting until {step.deadline_at:%H:%M:%S} UTC", step=step)
        return "waiting"
    if not may_run:
        enqueue_advance(install)
        return "continued"
    if step.kind == StepKind.POWER_CYCLE and install.batch_id and not step.not_before:
        slot_s = reserve_power_on(install)
        if slot_s > 0.05:
            step.not_before = now + timedelta(seconds=slot_s)
            step.save(update_fields=["not_before"])
            emit(install, EventKind.STEP, f"{step.label}: staggered, in {slot_s:.0f} s", step=step)
            enqueue_advance(install, delay_s=slot_s)
            return "staggered"
    move_step(install, step, StepState.RUNNING)
    return install, step


def _next_pending(install: Install, steps: list[Step]) -> Step | None:
    """Of the steps that may run now, the one to claim: a worker's first (a parallel stage's BMC calls run
    one after another in the job, each short), then the others in order. Agent steps of a parallel stage
    are handed out as the agent asks (installs/callbacks.py)."""
    pending = [s for s in steps if s.state == StepState.PENDING]
    if not pending:
        return None
    workers = [s for s in pending if mover(install, s) == Mover.WORKER]
    return (workers or pending)[0]


def _continued_note(install: Install) -> str:
    """What an install that went on past failed tasks says when it succeeds."""
    continued = [s.label for s in install.steps.filter(state=StepState.FAILED)]
    if not continued:
        return ""
    return f"Succeeded, but {len(continued)} task(s) failed and the workflow went on: " + "; ".join(continued)


def attempts_allowed(step: Step) -> int:
    """How many times a step may run: its workflow's retries + 1, or the setting for worker steps of plans
    without a policy. Destructive tasks not safe to repeat run once."""
    policy = step.policy or {}
    if not policy:
        return settings.STEP_MAX_ATTEMPTS if KINDS[step.kind].mover == Mover.WORKER else 1
    if policy.get("destructive") and not policy.get("safe_to_repeat"):
        return 1
    retries = policy.get("retries") or 0
    if KINDS[step.kind].mover == Mover.WORKER:
        return max(settings.STEP_MAX_ATTEMPTS, retries + 1)
    return retries + 1


def _backoff_s(attempt: int, step: Step | None = None) -> float:
    first = (step.policy or {}).get("backoff_s") if step is not None and step.policy else None
    first = first or settings.STEP_RETRY_BASE_S
    base = min(max(settings.STEP_RETRY_MAX_S, first), first * 2 ** (attempt - 1))
    return base * random.uniform(0.8, 1.2)  # jitter: a rack of failed BMCs must not retry in lockstep


def fail_or_continue(install: Install, step: Step, reason: str, message: str, *, actor: Actor = SYSTEM) -> str:
    """A step failed for good: the install fails, unless its workflow said to go on past it (marked)."""
    if (step.policy or {}).get("on_failure") == "continue":
        move_step(install, step, StepState.FAILED, message=message, result={**step.result, "reason": reason})
        emit(
            install,
            EventKind.ALERT,
            f"{step.label} failed and the workflow goes on: {message}",
            step=step,
            data={"reason": reason, "continued": True},
        )
        _progress(install, step)
        enqueue_advance(install)
        return "continued"
    fail(install, reason, message, step=step, actor=actor)
    return "failed"


def retry_later(install: Install, step: Step, error_message: str, reason: str) -> float:
    """Put a failed attempt back to pending with backoff; the caller checked attempts_allowed."""
    delay = _backoff_s(step.attempts, step)
    not_before = timezone.now() + timedelta(seconds=delay)
    move_step(install, step, StepState.PENDING, message=error_message, not_before=not_before)
    emit(
        install,
        EventKind.STEP,
        f"{step.label}: attempt {step.attempts} of {attempts_allowed(step)} failed ({error_message}); "
        f"retrying in {delay:.0f} s",
        step=step,
        data={"reason": reason, "retry_in_s": round(delay, 1)},
    )
    enqueue_advance(install, delay_s=delay)
    return delay


@transaction.atomic
def _settle(install_id: int, step_id: int, attempt: int, result: dict | None, error, *, may_run: bool = True):
    install = lock(install_id)
    step = Step.objects.get(pk=step_id)
    if step.state != StepState.RUNNING or step.attempts != attempt:
        # Cancelled, failed or swept while we ran. The step may have re-armed a boot config or
        # network boot after the cleanup ran: clean up again (idempotent).
        if install.state in TERMINAL_STATES:
            _enqueue_cleanup(install)
        return "superseded"
    if error is None and (result or {}).get("skipped"):
        move_step(install, step, StepState.SKIPPED, message=result["skipped"])
        emit(install, EventKind.STEP, f"{step.label}: {result['skipped']}", step=step)
        return _claim_locked(install, may_run=may_run)
    if error is None:
        succeed_step(install, step, result or {})
        return _claim_locked(install, may_run=may_run)  # the next step, in the same transaction
    if error.retryable and step.attempts < attempts_allowed(step):
        retry_later(install, step, error.message, error.reason)
        return "retry"
    if error.retryable:
        message = f"{error.message} Gave up after {step.attempts} attempts."
    else:
        message = error.message
    return fail_or_continue(install, step, error.reason, message)


def complete_wait(install: Install, kinds: tuple[str, ...], message: str = "", result: dict | None = None) -> bool:
    """End the current wait step if it is one of ``kinds`` (install locked). Returns False when it
    is not waiting there (a late or duplicate callback: harmless)."""
    step = current_step(install)
    if step is not None and step.kind not in kinds:
        return _answered_early(install, step, kinds, message)
    if step is None or step.state not in (StepState.WAITING, StepState.PENDING):
        return False
    if mover(install, step) != Mover.WAIT:
        return False
    enter(install, step)
    complete_step(install, step, result or {}, message)
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
    if mover(install, following) != Mover.WAIT:
        return False
    following.result = {**following.result, "answered_early": {"at": timezone.now().isoformat(), "message": message}}
    following.save(update_fields=["result"])
    return True


# --- cleanup ----------------------------------------------------------------------------------


def cleanup(install_id: int) -> str:
    """RQ job, after an install ends however it ends: the per-MAC boot config and the virtual media ISO are
    gone, the virtual CD is ejected and the BMC's one-time boot no longer points at the network or the CD.
    Idempotent; RQ retries it on failure."""
    install = Install.objects.select_related("machine").get(pk=install_id)
    newer = Install.objects.filter(machine_id=install.machine_id, state__in=ACTIVE_STATES).exclude(pk=install_id)
    if newer.exists():
        # Late (a lost job queued again): the machine's boot config, boot device and virtual CD belong to its
        # new install now, and removing them would make that one fail. This install's own ISO is no one else's.
        iso.remove(install.plan.site.tftp_root, media.iso_name(install))
        Install.objects.filter(pk=install_id, cleaned_at__isnull=True).update(cleaned_at=timezone.now())
        return "a newer install owns the machine's boot config"
    plan = install.plan
    removed, local = discovery_boot.release_boot_config(plan.site.tftp_root, plan.site.slug, plan.machine.mac)
    notes = []
    if removed:
        notes.append("per-MAC boot config removed")
    if local:
        notes.append("per-MAC boot config now boots the local disk (the site discovers unknown machines)")
        site = Site.objects.filter(slug=plan.site.slug).first()
        if site is not None:  # the machine's other MACs, and whatever changed while the install ran
            discovery_boot.enqueue_reconcile(site)
    # Virtual media: the ISO carries the boot credential as the per-MAC config does, and a CD left in would boot
    # again at the next reset. Ejecting is retried like the boot device reset below; the ISO goes in any case.
    media_inserted = install.steps.filter(kind=StepKind.INSERT_MEDIA, attempts__gt=0).exists()
    if media_inserted:
        if iso.remove(install.plan.site.tftp_root, media.iso_name(install)):
            notes.append("virtual media ISO removed")
        ejected = install.steps.filter(kind=StepKind.EJECT_MEDIA, state=StepState.SUCCEEDED).exists()
        # A driver without virtual media was refused before anything was inserted: nothing to eject.
        if not ejected and Capability.VIRTUAL_MEDIA in power.capabilities_of(install.machine):
            try:
                if runners.eject_media(install, None)["ejected"]:
                    notes.append("virtual media ejected")
            except runners.StepFailed as exc:
                with transaction.atomic():
                    emit(install, EventKind.ALERT, f"Could not eject the virtual media: {exc.message}")
                if exc.retryable:
                    raise  # RQ retries with backoff
    Install.objects.filter(pk=install_id, cleaned_at__isnull=True).update(cleaned_at=timezone.now())
    boot_set = install.steps.filter(kind=StepKind.SET_BOOT_DEVICE, attempts__gt=0, params__device__in=["pxe", "cd"])
    armed = install.steps.filter(kind=StepKind.SET_BOOT_PXE, attempts__gt=0).exists() or boot_set.exists()
    disk_set = install.steps.filter(kind=StepKind.SET_BOOT_DISK, state=StepState.SUCCEEDED).exists()
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
