"""The agent's progress reports: percent, message and log lines of the task it is running.

The busiest write in the product (every agent about once a second while a task runs), so it is
written with a few plain SQL statements per batch of reports rather than the ORM per report: on
a 2-core control plane one ORM query cost more CPU (about 1.3 ms to build) than PostgreSQL took
to run the whole batch. The rules live once, in ``_batch``, a generator that yields the
statements it needs and decides from their results; two drivers run it: ``agent_progress`` /
``agent_progress_many`` on Django's connection (the agent API's view, SQLite), and
``agent_progress_async`` on an asynchronous psycopg connection, which installs/ingest.py uses
so that daphne's event loop never waits on a thread.

No install row lock: a report changes nothing the state machine reads. The steps a batch names
are locked (only they: never an install, so no lock-order cycle with the engine, which locks the
install first), so a report that races the task's result sees the result's state: late progress
of a finished task is dropped, not recorded after the end.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC

from django.db import connection, transaction
from django.utils import timezone

from . import tokens
from .events import adopt_ids, insert_statement, publish
from .models import ACTIVE_STATES, Event, EventKind, Install, Step, StepKind, StepState

# agent_seen_at is written at most this often from progress reports: the sweeper's silence limit
# (AGENT_SILENCE_S, 3 minutes) needs no more, heartbeats write it every 30 s anyway, and with 500
# machines reporting every 5 s cost 100 row updates a second.
SEEN_WRITE_INTERVAL_S = 30


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
    """One SQL statement for a driver to run: ``rows`` asks for the result rows back; ``many`` runs
    it once per parameter tuple (sent together); ``last``, the batch's final statement, whose rows
    may come back with the commit's answer (one round trip less)."""

    sql: str
    params: list | tuple = ()
    rows: bool = False
    many: bool = False
    last: bool = False


@dataclass
class BatchResult:
    outcomes: list[str]
    events: list[Event]  # saved, to publish once the transaction commits
    seen: Statement | None  # agent_seen_at to write after it (outside the step locks)


Batch = Generator[Statement, list | None, BatchResult]


def agent_progress(install: Install, report: ProgressReport) -> str:
    """One report from an agent already authenticated as ``install``: its Outcome."""
    return _run_sync(_batch([report], install=install)).outcomes[0]


def agent_progress_many(reports: list[ProgressReport]) -> list[str]:
    """Many agents' reports at once, each carrying its token: one Outcome per report, in order."""
    return _run_sync(_batch(reports)).outcomes


async def agent_progress_async(conn, reports: list[ProgressReport]) -> BatchResult:
    """agent_progress_many on an asynchronous psycopg connection (PostgreSQL), committed when this
    returns; the caller publishes ``events`` and then runs ``seen`` (note_seen_async). Pipeline mode:
    statements go out without waiting for earlier answers; the connection waits for the locked steps,
    then once more for the updates, the inserted events' ids and the commit together."""
    gen = _batch(reports)
    answer = None
    async with conn.pipeline(), conn.cursor() as cursor:
        async with conn.transaction():
            try:
                while not (statement := gen.send(answer)).last:
                    answer = await _run_async(cursor, statement)
            except StopIteration as stop:  # nothing to insert
                return stop.value
            await cursor.execute(statement.sql, statement.params)
        try:  # committed: the last statement's rows came with the commit's answer
            gen.send(await cursor.fetchall())
        except StopIteration as stop:
            return stop.value
    raise RuntimeError("a progress batch went on after its last statement")


async def holder_async(conn, token: str) -> bool:
    """Whether ``token`` is an active install's agent token (credentials.agent_install, on the async connection)."""
    if not tokens.usable(token):
        return False
    where, values = _among(_col(Install, "agent_token_hash"), [tokens.token_hash(token)])
    async with conn.cursor() as cursor:
        await cursor.execute(_installs_sql(where), values)
        rows = await cursor.fetchall()
    return any(holds(_Installed(pk, state, token_hash, seen), token) for pk, state, token_hash, seen in rows)


async def note_seen_async(conn, result: BatchResult) -> None:
    async with conn.transaction(), conn.cursor() as cursor:
        await _run_async(cursor, result.seen)


def _run_sync(gen: Batch) -> BatchResult:
    with transaction.atomic():
        with connection.cursor() as cursor:
            result = _drive_sync(cursor, gen)
        transaction.on_commit(lambda: publish(result.events))
    if result.seen is not None:
        with connection.cursor() as cursor:
            _run(cursor, result.seen)
    return result


def _drive_sync(cursor, gen: Batch) -> BatchResult:
    answer = None
    try:
        while True:
            answer = _run(cursor, gen.send(answer))
    except StopIteration as stop:
        return stop.value


def _run(cursor, statement: Statement):
    if statement.many:
        cursor.executemany(statement.sql, statement.params)  # psycopg pipelines these
        return None
    cursor.execute(statement.sql, statement.params)
    return cursor.fetchall() if statement.rows else None


async def _run_async(cursor, statement: Statement):
    if statement.many:
        await cursor.executemany(statement.sql, statement.params)
        return None
    await cursor.execute(statement.sql, statement.params)
    return await cursor.fetchall() if statement.rows else None


def _batch(reports: list[ProgressReport], *, install=None) -> Batch:
    """The rules, for reports of one ``install`` already authenticated (the view) or each carrying
    its token (a batch). The steps the reports name are read, locked, with their installs, which
    authenticate the tokens; only a token whose report names some other install's step (or none)
    costs a lookup of its own. Then the steps' progress, then the events."""
    ids = sorted({parsed[0] for r in reports if (parsed := parse_task_id(r.task_id))})
    steps, installs = {}, {}
    if ids:
        where, values = _among(f"s.{_col(Step, 'id')}", ids)
        rows = yield Statement(_steps_sql(where), [*values, StepKind.AGENT_TASK], rows=True)
        for pk, install_id, attempts, state, progress, message, task, i_state, token_hash, seen in rows:
            steps[pk] = _TaskStep(pk, install_id, attempts, state, progress, message, task)
            installs[install_id] = _Installed(install_id, i_state, token_hash, _aware(seen))
    if install is not None:
        pairs = [(install, r) for r in reports]
    else:
        hashes = {r.token: tokens.token_hash(r.token) for r in reports if tokens.usable(r.token)}
        by_hash = {i.agent_token_hash: i for i in installs.values()}
        unknown = sorted(set(hashes.values()) - by_hash.keys())
        if unknown:
            where, values = _among(_col(Install, "agent_token_hash"), unknown)
            rows = yield Statement(_installs_sql(where), values, rows=True)
            by_hash.update((row[2], _Installed(row[0], row[1], row[2], _aware(row[3]))) for row in rows)
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
    return BatchResult(outcomes, events, _seen_statement(pairs))


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
    seen = Install._meta.get_field("agent_seen_at")
    where, values = _among(_col(Install, "id"), due)
    sql = f"UPDATE {_q(Install._meta.db_table)} SET {_col(Install, 'agent_seen_at')} = %s WHERE {where}"
    return Statement(sql, [seen.get_db_prep_save(now, connection), *values])


def _among(column: str, values: list) -> tuple[str, list]:
    """``column`` is one of ``values``: one array parameter on PostgreSQL, so that the statement's text
    (and psycopg's cache of it) is the same whatever the batch's size; a list elsewhere."""
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
