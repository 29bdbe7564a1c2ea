"""The sweeper: a periodic job (installs/periodic.py) that ends what overstays its deadline and revives
what was lost.

It is the reason nothing can stay stuck: a machine that never boots, an agent that goes silent,
a worker killed in the middle of a step, a job lost with a Redis restart.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from . import engine
from .batches import admit
from .events import emit
from .models import Batch, BatchState, EventKind, Install, Step
from .states import ACTIVE_STATES, STEP_DONE_STATES, TERMINAL_STATES, InstallState, StepState
from .stepkinds import KINDS, StepKind

log = logging.getLogger(__name__)


def _expire_wait(install_id: int, step_id: int) -> None:
    with transaction.atomic():
        install = engine.lock(install_id)
        step = Step.objects.get(pk=step_id)
        if install.state not in ACTIVE_STATES or step.state not in (StepState.WAITING, StepState.DISPATCHED):
            return
        if step.deadline_at is None or step.deadline_at > timezone.now():
            return
        minutes = max(1, round((step.deadline_at - step.started_at).total_seconds() / 60)) if step.started_at else "?"
        reason, message = KINDS[step.kind].timeout(host=install.machine.hostname, minutes=minutes, task=step.task)
        engine.fail_or_continue(install, step, reason, message)


def _recover_lost_worker(install_id: int, step_id: int) -> None:
    """A worker died running this step (SIGKILL, OOM, host reboot): retry it, or give up with a reason."""
    with transaction.atomic():
        install = engine.lock(install_id)
        step = Step.objects.get(pk=step_id)
        if install.state not in ACTIVE_STATES or step.state != StepState.RUNNING:
            return
        if step.deadline_at is None or step.deadline_at > timezone.now():
            return
        if step.attempts < settings.STEP_MAX_ATTEMPTS:
            message = "The worker running this step stopped; retrying."
            engine.move_step(install, step, StepState.PENDING, message=message)
            emit(install, EventKind.STEP, f"{step.label}: the worker running it was lost; retrying", step=step)
            engine.enqueue_advance(install)
        else:
            engine.fail(
                install,
                "WorkerLost",
                f"The worker running “{step.label}” stopped {step.attempts} times. Check the site's worker host.",
                step=step,
            )


def _silent_agent(install_id: int) -> None:
    with transaction.atomic():
        install = engine.lock(install_id)
        cutoff = timezone.now() - timedelta(seconds=settings.AGENT_SILENCE_S)
        if install.state not in ACTIVE_STATES or not install.agent_seen_at or install.agent_seen_at > cutoff:
            return
        # In a parallel stage the first step not done may be a sibling waiting out a retry's backoff: look at
        # every step that may run now for one the agent holds.
        out = [
            s
            for s in engine.current_steps(install)
            if s.kind == StepKind.AGENT_TASK and s.state == StepState.DISPATCHED
        ]
        if not out:
            return
        step = out[0]
        engine.fail(
            install,
            "AgentLost",
            f"The agent on {install.machine.hostname} has not been heard from for {settings.AGENT_SILENCE_S} s "
            f"while running {step.task.replace('_', ' ')}. The machine may have crashed or lost its network.",
            step=step,
        )


def sweep() -> dict:
    """Run every SWEEP_INTERVAL_S by the scheduler. Returns counts, for logs and tests."""
    now = timezone.now()
    counts = {"expired": 0, "lost_workers": 0, "silent_agents": 0, "revived": 0, "admitted": 0, "uncleaned": 0}
    live = Step.objects.filter(install__state__in=ACTIVE_STATES)
    for install_id, step_id in live.filter(
        state__in=[StepState.WAITING, StepState.DISPATCHED], deadline_at__lt=now
    ).values_list("install_id", "pk"):
        _expire_wait(install_id, step_id)
        counts["expired"] += 1
    for install_id, step_id in live.filter(state=StepState.RUNNING, deadline_at__lt=now).values_list(
        "install_id", "pk"
    ):
        _recover_lost_worker(install_id, step_id)
        counts["lost_workers"] += 1
    silence = now - timedelta(seconds=settings.AGENT_SILENCE_S)
    for install_id in (
        live.filter(kind=StepKind.AGENT_TASK, state=StepState.DISPATCHED, install__agent_seen_at__lt=silence)
        .values_list("install_id", flat=True)
        .distinct()
    ):
        _silent_agent(install_id)
        counts["silent_agents"] += 1
    # Lost jobs: a pending step whose predecessor finished a while ago and whose retry time has passed.
    stale = now - timedelta(seconds=settings.SWEEP_LOST_JOB_AFTER_S)
    predecessor_done = Step.objects.filter(
        install=OuterRef("install"), order=OuterRef("order") - 1, state__in=STEP_DONE_STATES, finished_at__lt=stale
    )
    lost = (
        live.exclude(install__state=InstallState.QUEUED)
        .filter(state=StepState.PENDING, order__gt=0)
        .exclude(kind=StepKind.AGENT_TASK)
        .filter(Exists(predecessor_done))
        .exclude(not_before__gt=stale)
        .select_related("install")
    )
    for step in lost:
        with transaction.atomic():
            engine.enqueue_advance(step.install)
        counts["revived"] += 1
    first_lost = Install.objects.filter(state=InstallState.PREPARING, state_changed_at__lt=stale).filter(
        steps__order=0, steps__state=StepState.PENDING
    )
    for install in first_lost:
        with transaction.atomic():
            engine.enqueue_advance(install)
        counts["revived"] += 1
    # Ended installs whose cleanup never ran: their per-MAC boot config may still be armed.
    uncleaned = Install.objects.filter(state__in=TERMINAL_STATES, cleaned_at__isnull=True, finished_at__lt=stale)
    for install in uncleaned.only("pk", "plan"):
        counts["uncleaned"] += engine.enqueue_lost_cleanup(install)
    for batch_id in (
        Batch.objects.filter(state=BatchState.RUNNING, installs__state=InstallState.QUEUED)
        .values_list("pk", flat=True)
        .distinct()
    ):
        counts["admitted"] += admit(batch_id)
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts
