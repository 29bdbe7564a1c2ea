"""Requesting installs, and batches: admission under per-site and per-rack caps, a power-on
stagger per rack, and a pause by itself when too many installs fail. Over the caps is queued,
never refused."""

from __future__ import annotations

import dataclasses
from collections import Counter

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.dispatch import receiver
from django.utils import timezone

from audit.service import Actor, record
from core import queues
from inventory import lifecycle, protection
from inventory.models import Machine, OSProfile

from . import tokens
from .engine import StaleTransition, enqueue_advance, install_ended, lock, set_state
from .engine import cancel as cancel_install
from .events import emit, publish
from .library import Operation, boots_by_media
from .models import Batch, BatchState, Event, EventKind, Install, Purpose, Step
from .plan import PlanError, plan_steps
from .states import ACTIVE_STATES, TERMINAL_STATES, InstallState


class InstallRefused(Exception):
    """The request cannot be accepted as it is; the message says which machines and why."""


def _holder(install: Install) -> str:
    when = timezone.localtime(install.created_at).strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"{install.machine.hostname} is already being installed: install {install.pk} "
        f"({install.state}), started by {install.requested_by_label} at {when}."
    )


def request_installs(
    machine_ids: list[int],
    profile: OSProfile,
    actor: Actor,
    *,
    name: str = "",
    max_per_site: int | None = None,
    max_per_rack: int | None = None,
    stagger_s: float | None = None,
    boot: str = "",
    operation: Operation | None = None,
) -> Batch:
    """Accept installs of ``profile`` on the machines as one batch, or refuse them all with reasons.
    ``operation`` (installs/operations.py) runs a commissioning, test or release workflow instead, each machine
    on its site's memory OS profile.
    ``boot`` (library.BOOTS) chooses a network or a virtual media boot over what the profile's workflow does.
    A refusal is audited here, whoever asked (page, REST, command line), after the request's own
    transaction has rolled back."""
    operation = operation or Operation.deploy(profile)
    options = {"name": name, "max_per_site": max_per_site, "max_per_rack": max_per_rack, "stagger_s": stagger_s,
               "boot": boot, "operation": operation}  # fmt: skip
    try:
        return _accept(machine_ids, profile, actor, **options)
    except InstallRefused as exc:
        hostnames = sorted(Machine.objects.filter(pk__in=machine_ids).values_list("hostname", flat=True))
        with transaction.atomic():
            record(
                actor,
                "install.refused",
                None,
                {
                    "profile": profile.name if profile else "",
                    "purpose": (operation or Operation.deploy(profile)).purpose,
                    "machines": hostnames,
                    "problems": list(exc.args[0]),
                },
                object_label=", ".join(hostnames)[:255],
            )
        raise


@transaction.atomic(durable=True)
def _accept(
    machine_ids: list[int],
    profile: OSProfile,
    actor: Actor,
    *,
    name: str,
    max_per_site: int | None,
    max_per_rack: int | None,
    stagger_s: float | None,
    boot: str,
    operation: Operation,
) -> Batch:
    machines = list(
        Machine.objects.select_for_update(of=("self",))
        .filter(pk__in=machine_ids)
        .select_related("rack__site", "bmc")
        .prefetch_related("nics")
        .order_by("rack__site__slug", "rack__name", "position_u", "hostname")
    )
    problems = []
    if len(machines) != len(set(machine_ids)):
        problems.append("Some of the machines no longer exist.")
    guard = "install" if operation.purpose == Purpose.DEPLOY else operation.purpose
    protected = protection.refused(machines, guard)
    if protected:
        problems.append(protection.refusal_message(protected, guard))
    busy_ids = set()
    for busy in Install.objects.filter(machine__in=machines, state__in=ACTIVE_STATES).select_related("machine"):
        problems.append(_holder(busy))
        busy_ids.add(busy.machine_id)
    problems += [
        lifecycle.refusal(m, operation.action)
        for m in machines
        if m.pk not in busy_ids and not lifecycle.stale(m, False) and not lifecycle.allows(m, operation.action)
    ]
    planned = []
    try:
        flow = operation.flow(boot)  # checked once: the same for every machine of the request
    except PlanError as exc:
        problems.extend(exc.messages)
    else:
        for machine in machines:
            try:
                planned.append((machine, operation.plan(machine, flow)))
            except PlanError as exc:
                problems.extend(exc.messages)
    if problems:
        raise InstallRefused(problems)

    batch = Batch(name=name, created_by=actor.user, created_by_label=actor.label)
    for field, value in (("max_per_site", max_per_site), ("max_per_rack", max_per_rack), ("stagger_s", stagger_s)):
        if value is not None:
            setattr(batch, field, value)
    batch.save()
    try:
        with transaction.atomic():
            for machine, plan in planned:
                steps = plan_steps(plan)
                plan = dataclasses.replace(plan, step_count=len(steps))
                install = Install.objects.create(
                    machine=machine,
                    profile=operation.profile_for(machine),
                    purpose=operation.purpose,
                    workflow=flow.name,
                    machine_status_before=machine.status,
                    batch=batch,
                    requested_by=actor.user,
                    requested_by_label=actor.label,
                    plan=plan,
                    **tokens.for_new_install(),
                )
                Step.objects.bulk_create(
                    Step(
                        install=install,
                        order=i,
                        kind=s.kind,
                        task=s.task,
                        params=s.params,
                        stage=s.stage,
                        stage_name=s.stage_name[:100],
                        parallel=s.parallel,
                        name=s.name[:100],
                        policy=s.policy,
                    )
                    for i, s in enumerate(steps)
                )
                details = {"profile": install.profile.name, "batch": batch.pk}
                if boot or operation.purpose != Purpose.DEPLOY:
                    details.update(workflow=flow.name, purpose=operation.purpose)
                if boot:
                    details.update(boot=boot)
                record(actor, "install.request", install, details)
                lifecycle.move(
                    machine, operation.status, actor, cause=f"install {install.pk} requested",
                    force=lifecycle.stale(machine, False),
                )  # fmt: skip
                what = (
                    install.profile.name
                    if operation.purpose == Purpose.DEPLOY
                    else f"{operation.purpose} ({flow.name})"
                )
                emit(install, EventKind.STATE, f"Requested by {actor.label}: {what}", data={"to": "queued"})
    except IntegrityError:
        # Another request took one of these machines between our check and our insert.
        busy = Install.objects.filter(machine__in=machines, state__in=ACTIVE_STATES).select_related("machine")
        raise InstallRefused([_holder(b) for b in busy] or ["A machine was taken by another request."]) from None
    record(
        actor,
        "batch.create",
        batch,
        {"profile": profile.name if profile else "", "purpose": operation.purpose,
         "machines": [m.hostname for m in machines]},
    )  # fmt: skip
    batch_id = batch.pk
    queues.on_commit(f"batch {batch_id}: admission", lambda: admit(batch_id))
    return batch


def _tell_installs(batch: Batch, message: str) -> None:
    """A state event on each install of the batch not yet ended, saying the batch paused or resumed: the install's
    log says why it waits, and every page that follows installs (the batch page among them) hears of it at once.
    Written in the caller's transaction, published when it commits; one INSERT per thousand installs."""
    pending = batch.installs.filter(state__in=ACTIVE_STATES).values_list("pk", flat=True)
    data = {"batch": batch.pk, "batch_state": batch.state}
    events = Event.objects.bulk_create(
        (Event(install_id=pk, kind=EventKind.STATE, message=message[:10000], data=data) for pk in pending),
        batch_size=1000,
    )
    if events:
        transaction.on_commit(lambda: publish(events))


def _pause_if_failing(batch: Batch) -> bool:
    ended = batch.installs.filter(state__in=[InstallState.SUCCEEDED, InstallState.FAILED])
    if batch.failures_counted_since is not None:
        ended = ended.filter(finished_at__gt=batch.failures_counted_since)
    counts = dict(ended.values_list("state").annotate(n=Count("pk")).order_by())
    failed, total = counts.get(InstallState.FAILED, 0), sum(counts.values())
    if total >= batch.pause_min_ended and failed / total > batch.pause_failure_ratio:
        batch.state = BatchState.PAUSED
        batch.state_changed_at = timezone.now()
        batch.pause_reason = (
            f"Paused by itself: {failed} of {total} ended installs failed "
            f"(more than {batch.pause_failure_ratio:.0%}). Look at the failures, then resume or cancel."
        )
        batch.save(update_fields=["state", "state_changed_at", "pause_reason"])
        record(Actor.system("engine"), "batch.pause", batch, {"reason": batch.pause_reason})
        _tell_installs(batch, f"{batch}: {batch.pause_reason}")
        return True
    return False


@receiver(install_ended)
def _admit_after_end(sender, install: Install, **kwargs) -> None:
    """An install ended, so a slot of its batch is free: admit the next (installs/apps.py connects this)."""
    if install.batch_id:
        batch_id = install.batch_id
        queues.on_commit(f"batch {batch_id}: admission", lambda: admit(batch_id))


@transaction.atomic
def admit(batch_id: int) -> int:
    """Start as many queued installs of the batch as its caps allow. Returns how many started.
    A few aggregate queries whatever the batch's size: it runs every time one of its installs ends."""
    batch = Batch.objects.select_for_update().get(pk=batch_id)
    if not batch.installs.filter(state__in=ACTIVE_STATES).exists():
        if batch.state in (BatchState.RUNNING, BatchState.PAUSED):
            batch.state = BatchState.FINISHED
            batch.state_changed_at = timezone.now()
            batch.save(update_fields=["state", "state_changed_at"])
        return 0
    queued = batch.installs.filter(state=InstallState.QUEUED)
    if batch.state != BatchState.RUNNING or not queued.exists() or _pause_if_failing(batch):
        return 0
    running = batch.installs.filter(state__in=ACTIVE_STATES).exclude(state=InstallState.QUEUED)
    per_site = Counter(dict(running.values_list("machine__rack__site_id").annotate(n=Count("pk")).order_by()))
    per_rack = Counter(dict(running.values_list("machine__rack_id").annotate(n=Count("pk")).order_by()))
    started = 0
    for install_id, site, rack in queued.order_by("pk").values_list("pk", "machine__rack__site_id", "machine__rack_id"):
        if per_site[site] >= batch.max_per_site or per_rack[rack] >= batch.max_per_rack:
            continue
        install = lock(install_id)
        if install.state != InstallState.QUEUED:
            continue
        set_state(install, InstallState.PREPARING)
        enqueue_advance(install)
        per_site[site] += 1
        per_rack[rack] += 1
        started += 1
    return started


BATCH_ACTIONS = {
    BatchState.RUNNING: "batch.resume",
    BatchState.PAUSED: "batch.pause",
    BatchState.CANCELLED: "batch.cancel",
}


def set_batch_state(batch_id: int, to: str, actor: Actor, why: str = "") -> Batch:
    """Pause, resume or cancel a batch. Cancelling cancels every install that has not ended."""
    with transaction.atomic(durable=True):
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        if batch.state in (BatchState.CANCELLED, BatchState.FINISHED):
            raise InstallRefused([f"{batch} has already {batch.state}."])
        batch.state = to
        batch.state_changed_at = timezone.now()
        batch.pause_reason = why if to == BatchState.PAUSED else ""
        if to == BatchState.RUNNING:
            batch.failures_counted_since = batch.state_changed_at  # a person has looked at the failures
        batch.save(update_fields=["state", "state_changed_at", "pause_reason", "failures_counted_since"])
        record(actor, BATCH_ACTIONS[to], batch, {"why": why})
        if to != BatchState.CANCELLED:  # a cancel tells each install as it cancels it
            done = "paused" if to == BatchState.PAUSED else "resumed"
            _tell_installs(batch, f"{batch} {done} by {actor.label}" + (f": {why}" if why else ""))
        if to == BatchState.RUNNING:
            queues.on_commit(f"batch {batch_id}: admission", lambda: admit(batch_id))
        pending = list(batch.installs.filter(state__in=ACTIVE_STATES).values_list("pk", flat=True))
    if to == BatchState.CANCELLED:
        for install_id in pending:
            try:
                cancel_install(install_id, actor=actor, why=why or "batch cancelled")
            except StaleTransition:  # ended meanwhile: fine
                continue
    return batch


def retry(install_id: int, actor: Actor) -> Batch:
    """Install the machine of an ended install again, with the same profile as it is now."""
    install = Install.objects.select_related("profile").get(pk=install_id)
    if install.state not in TERMINAL_STATES:
        raise InstallRefused([f"Install {install.pk} has not ended; cancel it first."])
    name = f"retry of install {install.pk}"
    if install.purpose != Purpose.DEPLOY:  # the same operation with the same workflow, as it is now
        operation = Operation(install.purpose, workflow=install.plan.flow.name)
        batch = request_installs([install.machine_id], None, actor, name=name, operation=operation)
        record(actor, "install.retry", install, {"batch": batch.pk})
        return batch
    # A retry boots as the install did: by virtual media if it inserted media, as the profile says otherwise.
    boot = "virtual-media" if boots_by_media(install.plan.flow) else ""
    batch = request_installs([install.machine_id], install.profile, actor, name=name, boot=boot)
    record(actor, "install.retry", install, {"batch": batch.pk})
    return batch
