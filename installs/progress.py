"""The agent's progress reports: percent, message and log lines of the task it is running.

The busiest write in the product (every agent about once a second while a task runs), so it is
written with a few plain SQL statements per commit group of reports rather than the ORM per report:
on a 2-core control plane one ORM query cost more CPU (about 1.3 ms to build) than PostgreSQL took
to run the whole group. The rules live once, here, as generators that yield the statements they
need and decide from their results: ``group`` (a commit group of reports, each carrying its token),
``holder`` (the token check of a report refused before it joined a group) and ``seen``. They know no
connection: installs/ingest.py, the one path reports take, runs them through its store (an
asynchronous psycopg connection on PostgreSQL, Django's connection on a thread of its own for SQLite).

No install row lock: a report changes nothing the state machine reads. The steps a group names
are locked (only they: never an install, so no lock-order cycle with the engine, which locks the
install first), so a report that races the task's result sees the result's state: late progress
of a finished task is dropped, not recorded after the end.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC

from django.db import connection
from django.utils import timezone

from . import tokens
from .events import adopt_ids, insert_statement
from .models import ACTIVE_STATES, Event, EventKind, Install, Step, StepKind, StepState

# agent_seen_at is written at most this often from progress reports: the sweeper's silence limit
# (AGENT_SILENCE_S, 3 minutes) needs no more, heartbeats write it every 30 s anyway, and with 500
# machines reporting every 5 s cost 100 row updates a second.
SEEN_WRITE_INTERVAL_S = 30


class Outcome:
    """What became of one report (installs/ingest.py turns these into answers)."""

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
    token: str = ""  # the agent token the report came with: each report is authenticated in its group


@dataclass
class _Installed:
    """The columns of an install a report needs: who it is, whether it is active, when last heard."""

    pk: int
    state: str
    agent_token_hash: str
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
    """Whether ``token`` is this install's agent token and the install is active. The hash lookup already
    proved possession; the constant-time compare keeps timing uniform whether the row was found or not."""
    return install is not None and tokens.matches(token, install.agent_token_hash) and install.state in ACTIVE_STATES


@dataclass
class Statement:
    """One SQL statement for a store to run: ``rows`` asks for the result rows back; ``many`` runs
    it once per parameter tuple (sent together); ``last``, the transaction's final statement, whose
    rows may come back with the commit's answer (one round trip less)."""

    sql: str
    params: list | tuple = ()
    rows: bool = False
    many: bool = False
    last: bool = False


@dataclass
class GroupResult:
    """What a commit group of reports came to: one outcome per report, in order."""

    outcomes: list[str]
    events: list[Event]  # saved, to publish once the transaction has committed
    seen: Statement | None  # agent_seen_at to write after it (outside the step locks)


# The rules as a generator: it yields the statements it needs, is sent each one's rows (a list, or None
# when the statement asked for none) and returns its answer. A store runs it in one transaction.
Statements = Generator[Statement, list | None, object]


def group(reports: list[ProgressReport]) -> Statements:
    """Many agents' reports at once, each carrying its token: a GroupResult, one Outcome per report, in order.

    The steps the reports name are read, locked, with their installs, which authenticate the tokens; only a
    token whose report names some other install's step (or none) costs a lookup of its own. Then the
    steps' progress, then the events."""
    ids = sorted({parsed[0] for r in reports if (parsed := parse_task_id(r.task_id))})
    steps, installs = {}, {}
    if ids:
        where, values = _among(f"s.{_col(Step, 'id')}", ids)
        rows = yield Statement(_steps_sql(where), [*values, StepKind.AGENT_TASK], rows=True)
        for pk, install_id, attempts, state, progress, message, task, i_state, token_hash, seen in rows:
            steps[pk] = _TaskStep(pk, install_id, attempts, state, progress, message, task)
            installs[install_id] = _Installed(install_id, i_state, token_hash, _aware(seen))
    hashes = {r.token: tokens.token_hash(r.token) for r in reports if tokens.usable(r.token)}
    by_hash = {i.agent_token_hash: i for i in installs.values()}
    unknown = sorted(set(hashes.values()) - by_hash.keys())
    if unknown:
        by_hash.update((i.agent_token_hash, i) for i in (yield from _installs_by_hash(unknown)))
    pairs = []
    for report in reports:
        found = by_hash.get(hashes.get(report.token, ""))
        pairs.append((found if holds(found, report.token) else None, report))
    outcomes, changed, events = _decide(pairs, steps)
    if changed:
        yield Statement(_update_sql(), [(s.progress, s.message, s.pk) for s in changed], many=True)
    for start in range(0, len(events), 1000):  # under both databases' limits on parameters per statement
        chunk = events[start : start + 1000]
        sql, params = insert_statement(chunk)
        last = start + 1000 >= len(events)
        adopt_ids(chunk, (yield Statement(sql, params, rows=True, last=last)))
    return GroupResult(outcomes, events, _seen_statement(pairs))


def holder(token: str) -> Statements:
    """Whether ``token`` is an active install's agent token: the check of a report refused before it
    joined a group (who asks comes first: a stranger learns nothing about the body)."""
    if not tokens.usable(token):
        return False
    return any(holds(i, token) for i in (yield from _installs_by_hash([tokens.token_hash(token)])))


def seen(result: GroupResult) -> Statements:
    """A group's agent_seen_at, written once its events are out."""
    if result.seen is not None:
        yield result.seen
    return None


def _installs_by_hash(hashes: list[str]) -> Generator[Statement, list | None, list[_Installed]]:
    where, values = _among(_col(Install, "agent_token_hash"), hashes)
    rows = yield Statement(_installs_sql(where), values, rows=True)
    return [_Installed(pk, state, token_hash, _aware(seen)) for pk, state, token_hash, seen in rows]


def _decide(pairs, steps: dict[int, _TaskStep]) -> tuple[list[str], list[_TaskStep], list[Event]]:
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
    return outcomes, list(changed.values()), events


def _seen_statement(pairs) -> Statement | None:
    """agent_seen_at of the installs heard from, at most every SEEN_WRITE_INTERVAL_S each."""
    now = timezone.now()
    due = sorted(
        {
            install.pk
            for install, _ in pairs
            if install is not None
            and (install.agent_seen_at is None or (now - install.agent_seen_at).total_seconds() > SEEN_WRITE_INTERVAL_S)
        }
    )
    if not due:
        return None
    column = Install._meta.get_field("agent_seen_at")
    where, values = _among(_col(Install, "id"), due)
    sql = f"UPDATE {_q(Install._meta.db_table)} SET {_col(Install, 'agent_seen_at')} = %s WHERE {where}"
    return Statement(sql, [column.get_db_prep_save(now, connection), *values])


def _among(column: str, values: list) -> tuple[str, list]:
    """``column`` is one of ``values``: one array parameter on PostgreSQL, so that the statement's text
    (and psycopg's cache of it) is the same whatever the group's size; a list elsewhere."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


def _steps_sql(where: str) -> str:
    """The agent-task steps named, locked (only they: never an install), with their installs."""
    s = {f: f"s.{_col(Step, f)}" for f in ("id", "install", "attempts", "state", "progress", "message", "task", "kind")}
    i = {f: f"i.{_col(Install, f)}" for f in ("id", "state", "agent_token_hash", "agent_seen_at")}
    if connection.features.has_select_for_update_of:
        lock = "FOR UPDATE OF s"
    else:
        lock = "FOR UPDATE" if connection.features.has_select_for_update else ""
    return (
        f"SELECT {s['id']}, {s['install']}, {s['attempts']}, {s['state']}, {s['progress']}, {s['message']}, "
        f"{s['task']}, {i['state']}, {i['agent_token_hash']}, {i['agent_seen_at']} "
        f"FROM {_q(Step._meta.db_table)} s JOIN {_q(Install._meta.db_table)} i ON {i['id']} = {s['install']} "
        f"WHERE {where} AND {s['kind']} = %s {lock}"
    )


def _installs_sql(where: str) -> str:
    columns = ", ".join(_col(Install, f) for f in ("id", "state", "agent_token_hash", "agent_seen_at"))
    return f"SELECT {columns} FROM {_q(Install._meta.db_table)} WHERE {where}"


def _update_sql() -> str:
    return "UPDATE {} SET {} = %s, {} = %s WHERE {} = %s".format(
        _q(Step._meta.db_table), *(_col(Step, f) for f in ("progress", "message", "id"))
    )


def _aware(value):
    """A datetime from a raw row: PostgreSQL's are aware, SQLite's naive UTC (USE_TZ)."""
    if value is None or timezone.is_aware(value):
        return value
    return timezone.make_aware(value, UTC)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _col(model, name: str) -> str:
    return _q(model._meta.get_field(name).column)
