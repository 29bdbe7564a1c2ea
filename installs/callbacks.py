"""What machines tell us: installer callbacks and the agent's calls, as service functions.

The HTTP layer (installs/api.py) authenticates the token and validates bodies; these functions
move the install through the same engine as everything else, so a late or repeated call is
harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.service import Actor, record
from inventory.models import Machine

from . import engine, tokens
from .events import emit, emit_many
from .models import ACTIVE_STATES, Event, EventKind, Install, Step, StepKind, StepState

INSTALLER_EVENT_KINDS = ("started", "progress", "finished", "failed")


def install_for_token(token: str) -> Install | None:
    """The active install this token belongs to, or None (wrong, expired or ended)."""
    if not token or len(token) > 200:
        return None
    install = Install.objects.select_related("machine").filter(token_hash=tokens.token_hash(token)).first()
    return install if _holds(install, token) else None


def _holds(install: Install | None, token: str) -> bool:
    # The hash lookup already proves possession; the constant-time compare keeps timing uniform
    # whether the row was found or not.
    return install is not None and tokens.matches(token, install.token_hash) and install.state in ACTIVE_STATES


def agent_actor(install: Install) -> Actor:
    return Actor.agent(f"agent:{install.machine.hostname}")


@transaction.atomic
def installer_event(install_id: int, kind: str, message: str = "", data: dict | None = None) -> str:
    """An installer (or the installed OS at first boot) calls back: started, progress, finished, failed."""
    install = engine.lock(install_id)
    if install.state not in ACTIVE_STATES:
        return "ended"
    data = data or {}
    if kind == "started":
        done = engine.complete_wait(install, (StepKind.WAIT_BOOT,), "the installer started")
        return "booted" if done else "duplicate"
    if kind == "progress":
        if message or data:
            emit(install, EventKind.PROGRESS, message[:2000], data=data)
        return "noted"
    if kind == "finished":
        engine.complete_wait(install, (StepKind.WAIT_BOOT,), "the installer started")
        done = engine.complete_wait(install, (StepKind.WAIT_INSTALLER, StepKind.VERIFY), message or "reported finished")
        return "finished" if done else "duplicate"
    if kind == "failed":
        engine.fail(
            install,
            "InstallerFailed",
            "The installer reported a failure" + (f": {message}" if message else ".") + " See the install log.",
            step=engine.current_step(install),
        )
        return "failed"
    raise ValueError(f"unknown installer event {kind!r}")


class WrongMachine(Exception):
    pass


def agent_register(install_id: int, facts: dict) -> Install:
    """The agent says hello with the machine's hardware facts. If none of its MACs is the
    machine's PXE NIC, it booted somewhere else: refuse it and fail the install, touching nothing."""
    install, refused = _register(install_id, facts)
    if refused:
        raise WrongMachine(refused)  # after the commit: the failure must stick
    return install


@transaction.atomic
def _register(install_id: int, facts: dict) -> tuple[Install, str]:
    install = engine.lock(install_id)
    expected = install.plan["machine"]["mac"]
    macs = {str(n.get("mac", "")).lower() for n in facts.get("nics", [])}
    actor = agent_actor(install)
    if expected not in macs:
        message = f"booted on a machine that is not {install.machine.hostname}"
        record(actor, "agent.refused", install, {"reason": "WrongMachine", "reported_macs": sorted(macs)})
        engine.fail(
            install,
            "WrongMachine",
            f"The agent {message} (its MACs: {', '.join(sorted(macs)) or 'none'}; expected {expected}). "
            "Check the PXE NIC's MAC in inventory and the cabling; nothing was written to any disk.",
            step=engine.current_step(install),
        )
        return install, message
    now = timezone.now()
    install.agent_seen_at = now
    install.save(update_fields=["agent_seen_at"])
    Machine.objects.filter(pk=install.machine_id).update(facts=facts)
    record(actor, "agent.register", install, {"macs": sorted(macs)})
    engine.complete_wait(install, (StepKind.WAIT_BOOT,), "the agent registered")
    return install, ""


def agent_heartbeat(install: Install) -> bool:
    """Returns whether the agent should stop (the install is no longer active)."""
    Install.objects.filter(pk=install.pk).update(agent_seen_at=timezone.now())
    return install.state not in ACTIVE_STATES


def _task_id(step: Step) -> str:
    return f"{step.pk}.{step.attempts}"


def _resolve_params(install: Install, step: Step) -> dict:
    """A blank disk in the plan means the machine's first disk, known from the registered facts."""
    params = dict(step.params)
    disks = [d for d in (install.machine.facts or {}).get("disks", []) if d.get("path")]
    first = disks[0]["path"] if disks else ""
    if "disk" in params and not params["disk"]:
        params["disk"] = first
    if "disks" in params:
        params["disks"] = [d or first for d in params["disks"]]
    return params


@transaction.atomic
def agent_next_task(install_id: int) -> dict:
    """What the agent should do now: {"task": {...}}, {"task": None, "retry_after_s": n}, or
    {"task": None, "finished": True} when its part of the plan is over."""
    install = engine.lock(install_id)
    Install.objects.filter(pk=install.pk).update(agent_seen_at=timezone.now())
    step = engine.current_step(install)
    if step is None or install.state not in ACTIVE_STATES:
        return {"task": None, "finished": True}
    if step.kind != StepKind.AGENT_TASK:
        later = install.steps.filter(kind=StepKind.AGENT_TASK, order__gt=step.order).exists()
        return {"task": None, "retry_after_s": 2} if later else {"task": None, "finished": True}
    if step.state == StepState.PENDING:
        now = timezone.now()
        engine._enter(install, step)
        step.state = StepState.DISPATCHED
        step.attempts += 1
        step.started_at = now
        step.deadline_at = now + timedelta(seconds=settings.INSTALL_AGENT_TASK_DEADLINE_S)
        step.params = _resolve_params(install, step)
        step.save(update_fields=["state", "attempts", "started_at", "deadline_at", "params"])
        install.deadline_at = step.deadline_at
        install.save(update_fields=["deadline_at"])
        emit(install, EventKind.STEP, f"{step.label}: handed to the agent", step=step)
    return {"task": {"id": _task_id(step), "kind": step.task, "params": step.params}}


class UnknownTask(Exception):
    pass


class NotCurrentTask(Exception):
    pass


def _parse_task_id(task_id: str) -> tuple[int, int] | None:
    """ "<step id>.<attempt>", ASCII digits of a size the database can hold, or None."""
    step_id, _, attempt = task_id.partition(".")
    for part in (step_id, attempt):
        if not (part.isascii() and part.isdigit() and len(part) <= 18):
            return None
    return int(step_id), int(attempt)


def _dispatched(install: Install, task_id: str) -> Step:
    parsed = _parse_task_id(task_id)
    if parsed is None:
        raise UnknownTask(task_id)
    step = install.steps.filter(pk=parsed[0], kind=StepKind.AGENT_TASK).first()
    if step is None:
        raise UnknownTask(task_id)
    if step.attempts != parsed[1]:
        raise NotCurrentTask(task_id)
    return step


# agent_seen_at is written at most this often from progress reports; the sweeper's silence limit
# (AGENT_SILENCE_S, minutes) does not need every report, and each write is a query on a hot path.
SEEN_WRITE_INTERVAL_S = 5


class Outcome:
    """What became of one progress report (installs/ingest.py turns these into HTTP answers)."""

    OK = "ok"
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_TASK = "unknown_task"
    NOT_CURRENT = "not_current"


@dataclass
class ProgressReport:
    task_id: str
    percent: int | None = None
    message: str = ""
    log: list[str] = field(default_factory=list)
    token: str = ""  # for agent_progress_many, which authenticates the reports itself


def agent_progress(install, task_id: str, percent: int | None, message: str, log: list[str]) -> None:
    """Progress and log lines of the running task, from an agent already authenticated."""
    if isinstance(install, int):
        install = Install.objects.get(pk=install)
    pairs = [(install, ProgressReport(task_id, percent, message, log))]
    with transaction.atomic():
        outcome = _record_progress(pairs, _locked_steps(pairs))[0]
    _note_seen(pairs)
    if outcome == Outcome.UNKNOWN_TASK:
        raise UnknownTask(task_id)
    if outcome == Outcome.NOT_CURRENT:
        raise NotCurrentTask(task_id)


def agent_progress_many(reports: list[ProgressReport]) -> list[str]:
    """Many agents' reports at once, each carrying its token: one Outcome per report, in order.
    The same rules as agent_progress, in the same few queries however many reports: the steps are
    read with their installs, which authenticate the tokens; only a token whose report names some
    other install's step (or none) costs a lookup of its own."""
    hashes = {r.token: tokens.token_hash(r.token) for r in reports if r.token and len(r.token) <= 200}
    with transaction.atomic():
        steps = _locked_steps([(None, r) for r in reports], with_installs=True)
        installs = {s.install.token_hash: s.install for s in steps.values()}
        unknown = set(hashes.values()) - installs.keys()
        if unknown:
            rows = Install.objects.filter(token_hash__in=unknown).only(*_INSTALL_FIELDS)
            installs.update((i.token_hash, i) for i in rows)
        pairs = []
        for report in reports:
            install = installs.get(hashes.get(report.token, ""))
            pairs.append((install if _holds(install, report.token) else None, report))
        outcomes = _record_progress(pairs, steps)
    _note_seen(pairs)
    return outcomes


_INSTALL_FIELDS = ("id", "state", "agent_seen_at", "token_hash")
_STEP_FIELDS = ("id", "install_id", "attempts", "state", "progress", "message", "task")


def _locked_steps(pairs, *, with_installs: bool = False) -> dict[int, Step]:
    """The agent-task steps the reports name, locked (only they: never an install, so no lock-order
    cycle with the engine, which locks the install first)."""
    ids = {parsed[0] for _, report in pairs if (parsed := _parse_task_id(report.task_id))}
    rows = Step.objects.filter(pk__in=ids, kind=StepKind.AGENT_TASK)
    if with_installs:
        rows = rows.select_related("install").only(*_STEP_FIELDS, *(f"install__{f}" for f in _INSTALL_FIELDS))
    else:
        rows = rows.only(*_STEP_FIELDS)
    return {s.pk: s for s in rows.select_for_update(of=("self",))} if ids else {}


def _note_seen(pairs) -> None:
    """agent_seen_at of the installs heard from, at most every SEEN_WRITE_INTERVAL_S each."""
    now = timezone.now()
    due = {
        install.pk
        for install, _ in pairs
        if install is not None
        and (install.agent_seen_at is None or (now - install.agent_seen_at).total_seconds() > SEEN_WRITE_INTERVAL_S)
    }
    if due:
        Install.objects.filter(pk__in=due).update(agent_seen_at=now)


def _record_progress(pairs: list[tuple[Install | None, ProgressReport]], steps: dict[int, Step]) -> list[str]:
    """No install row lock: a report changes nothing the state machine reads. The steps are locked,
    so a report that races the task's result sees the result's state: late progress of a finished
    task is dropped, not recorded after the end."""
    outcomes: list[str] = []
    changed: dict[int, Step] = {}
    events: list[Event] = []
    for install, report in pairs:
        parsed = _parse_task_id(report.task_id)
        step = steps.get(parsed[0]) if parsed else None
        if install is None:
            outcomes.append(Outcome.UNAUTHORIZED)
            continue
        if step is None or step.install_id != install.pk:
            outcomes.append(Outcome.UNKNOWN_TASK)
            continue
        if step.attempts != parsed[1]:
            outcomes.append(Outcome.NOT_CURRENT)
            continue
        outcomes.append(Outcome.OK)
        if step.state != StepState.DISPATCHED:
            continue  # late progress of a finished task
        if (report.percent is not None and report.percent != step.progress) or report.message:
            if report.percent is not None:
                step.progress = report.percent
            if report.message:
                step.message = report.message[:500]
            changed[step.pk] = step
            data = {"percent": step.progress, "task": step.task}
            events.append(Event(install=install, step=step, kind=EventKind.PROGRESS, message=report.message, data=data))
        if report.log:
            text = "\n".join(report.log)[:10000]
            events.append(
                Event(install=install, step=step, kind=EventKind.LOG, message=text, data={"lines": len(report.log)})
            )
    _save_progress(list(changed.values()))
    emit_many(events)
    return outcomes


def _save_progress(steps: list[Step]) -> None:
    """One UPDATE per step, sent together (psycopg pipelines executemany). bulk_update's CASE
    expressions took longer to build in Python than PostgreSQL took to run the whole batch."""
    if not steps:
        return
    quote, field = connection.ops.quote_name, Step._meta.get_field
    sql = "UPDATE {} SET {} = %s, {} = %s WHERE {} = %s".format(
        quote(Step._meta.db_table), *(quote(field(f).column) for f in ("progress", "message", "id"))
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(s.progress, s.message, s.pk) for s in steps])


@transaction.atomic
def agent_result(install_id: int, task_id: str, ok: bool, reason: str, message: str, output: str) -> str:
    install = engine.lock(install_id)
    step = _dispatched(install, task_id)
    if step.state in (StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED):
        return "duplicate"
    if step.state != StepState.DISPATCHED:
        raise NotCurrentTask(task_id)
    if output:
        emit(install, EventKind.LOG, output[-10000:], step=step, data={"output": True})
    if ok:
        engine._succeed_step(install, step, {"output_tail": output[-2000:]}, message)
        engine.enqueue_advance(install)  # worker steps may follow the last agent task
        return "ok"
    engine.fail(
        install,
        reason or "AgentTaskFailed",
        f"The agent's {step.task.replace('_', ' ')} failed" + (f": {message}" if message else "."),
        step=step,
        actor=agent_actor(install),
    )
    return "failed"
