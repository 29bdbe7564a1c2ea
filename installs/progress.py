"""The agent's progress reports: percent, message and log lines of the task it is running.

The busiest write in the product (every agent about once a second while a task runs), so it is
written with a few plain SQL statements per batch of reports rather than the ORM per report: on
a 2-core control plane one ORM query cost more CPU (about 1.3 ms to build) than PostgreSQL took
to run the whole batch. Both callers share this module: the agent API's Django view (one report,
its install already authenticated) and the batching route in installs/ingest.py (many reports,
each with its token).

No install row lock: a report changes nothing the state machine reads. The steps a batch names
are locked (only they: never an install, so no lock-order cycle with the engine, which locks the
install first), so a report that races the task's result sees the result's state: late progress
of a finished task is dropped, not recorded after the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC

from django.db import connection, transaction
from django.utils import timezone

from . import tokens
from .events import emit_many
from .models import ACTIVE_STATES, Event, EventKind, Install, Step, StepKind, StepState

# agent_seen_at is written at most this often from progress reports; the sweeper's silence limit
# (AGENT_SILENCE_S, minutes) does not need every report, and each write is a query on a hot path.
SEEN_WRITE_INTERVAL_S = 5


class Outcome:
    """What became of one report (the HTTP layers turn these into answers)."""

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


@dataclass
class _Installed:
    """The columns of an install a report needs: who it is, whether it is active, when last heard."""

    pk: int
    state: str
    token_hash: str
    agent_seen_at: object


@dataclass
class _TaskStep:
    pk: int
    install_id: int
    attempts: int
    state: str
    progress: int
    message: str
    task: str


def parse_task_id(task_id: str) -> tuple[int, int] | None:
    """ "<step id>.<attempt>", ASCII digits of a size the database can hold, or None."""
    step_id, _, attempt = task_id.partition(".")
    for part in (step_id, attempt):
        if not (part.isascii() and part.isdigit() and len(part) <= 18):
            return None
    return int(step_id), int(attempt)


def holds(install, token: str) -> bool:
    """Whether ``token`` is this install's and the install is active. The hash lookup already proved
    possession; the constant-time compare keeps timing uniform whether the row was found or not."""
    return install is not None and tokens.matches(token, install.token_hash) and install.state in ACTIVE_STATES


def agent_progress(install: Install, report: ProgressReport) -> str:
    """One report from an agent already authenticated as ``install``: its Outcome."""
    pairs = [(install, report)]
    with transaction.atomic():
        steps, _ = _locked_steps([report])
        outcome = _record(pairs, steps)[0]
    _note_seen(pairs)
    return outcome


def agent_progress_many(reports: list[ProgressReport]) -> list[str]:
    """Many agents' reports at once, each carrying its token: one Outcome per report, in order, in
    the same few statements however many. The steps are read with their installs, which
    authenticate the tokens; only a token whose report names some other install's step (or none)
    costs a lookup of its own."""
    hashes = {r.token: tokens.token_hash(r.token) for r in reports if r.token and len(r.token) <= 200}
    with transaction.atomic():
        steps, installs = _locked_steps(reports)
        by_hash = {i.token_hash: i for i in installs.values()}
        unknown = set(hashes.values()) - by_hash.keys()
        if unknown:
            by_hash.update((i.token_hash, i) for i in _installs_by_hash(unknown))
        pairs = []
        for report in reports:
            install = by_hash.get(hashes.get(report.token, ""))
            pairs.append((install if holds(install, report.token) else None, report))
        outcomes = _record(pairs, steps)
    _note_seen(pairs)
    return outcomes


def _record(pairs: list[tuple[object, ProgressReport]], steps: dict[int, _TaskStep]) -> list[str]:
    outcomes: list[str] = []
    changed: dict[int, _TaskStep] = {}
    events: list[Event] = []
    for install, report in pairs:
        parsed = parse_task_id(report.task_id)
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
        ids = {"install_id": install.pk, "step_id": step.pk}
        if (report.percent is not None and report.percent != step.progress) or report.message:
            if report.percent is not None:
                step.progress = report.percent
            if report.message:
                step.message = report.message[:500]
            changed[step.pk] = step
            data = {"percent": step.progress, "task": step.task}
            events.append(Event(**ids, kind=EventKind.PROGRESS, message=report.message, data=data))
        if report.log:
            text = "\n".join(report.log)[:10000]
            events.append(Event(**ids, kind=EventKind.LOG, message=text, data={"lines": len(report.log)}))
    if changed:
        sql = "UPDATE {} SET {} = %s, {} = %s WHERE {} = %s".format(
            _q(Step._meta.db_table), *(_col(Step, f) for f in ("progress", "message", "id"))
        )
        with connection.cursor() as cursor:  # executemany: sent together (psycopg pipelines it)
            cursor.executemany(sql, [(s.progress, s.message, s.pk) for s in changed.values()])
    emit_many(events)
    return outcomes


def _locked_steps(reports: list[ProgressReport]) -> tuple[dict[int, _TaskStep], dict[int, _Installed]]:
    """The agent-task steps the reports name, locked, and their installs."""
    ids = sorted({parsed[0] for r in reports if (parsed := parse_task_id(r.task_id))})
    if not ids:
        return {}, {}
    s = {f: f"s.{_col(Step, f)}" for f in ("id", "install", "attempts", "state", "progress", "message", "task", "kind")}
    i = {f: f"i.{_col(Install, f)}" for f in ("id", "state", "token_hash", "agent_seen_at")}
    if connection.features.has_select_for_update_of:
        lock = "FOR UPDATE OF s"
    else:
        lock = "FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = (
        f"SELECT {s['id']}, {s['install']}, {s['attempts']}, {s['state']}, {s['progress']}, {s['message']}, "
        f"{s['task']}, {i['state']}, {i['token_hash']}, {i['agent_seen_at']} "
        f"FROM {_q(Step._meta.db_table)} s JOIN {_q(Install._meta.db_table)} i ON {i['id']} = {s['install']} "
        f"WHERE {s['id']} IN ({', '.join(['%s'] * len(ids))}) AND {s['kind']} = %s {lock}"
    )
    steps, installs = {}, {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [*ids, StepKind.AGENT_TASK])
        for pk, install_id, attempts, state, progress, message, task, i_state, token_hash, seen in cursor.fetchall():
            steps[pk] = _TaskStep(pk, install_id, attempts, state, progress, message, task)
            installs[install_id] = _Installed(install_id, i_state, token_hash, _aware(seen))
    return steps, installs


def _installs_by_hash(hashes: set[str]) -> list[_Installed]:
    rows = Install.objects.filter(token_hash__in=hashes).values_list("id", "state", "token_hash", "agent_seen_at")
    return [_Installed(*row) for row in rows]


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


def _aware(value):
    """A datetime from a raw row: PostgreSQL's are aware, SQLite's naive UTC (USE_TZ)."""
    if value is None or timezone.is_aware(value):
        return value
    return timezone.make_aware(value, UTC)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _col(model, name: str) -> str:
    return _q(model._meta.get_field(name).column)
