"""Agent progress reports: the one path they take, in commit groups, whichever the database.

Progress is the call machines make most: each agent reports about once a second while a task runs,
so a site installing 500 machines sends about 500 reports a second. Through Django's request cycle
(a thread per request, the middleware, the ORM per report) one report cost about 9 ms of CPU and a
2-core control plane topped out below 100 a second. This ASGI app answers
``POST /api/agent/v1/tasks/<id>/progress`` itself and passes every other request to Django; daphne
serves it in production, ``make run`` and the tests alike (config/asgi.py).

Reports that arrive while a commit group is being written wait for the next one (group commit): each
group is one transaction of a few statements however many reports it carries, so the cost per report
falls as the rate rises, and a lone report is written at once. The agent is answered only after its
report is committed; the group's events are then published (installs/events.py) and the agents'
``agent_seen_at`` noted. The rules are installs/progress.py's; the body is checked by the loader of
core/edge.py and the agent API's schema, and refusals read as the agent API's (docs/agent-api.md): a
report the edge refuses never joins a group. If the database cannot be reached the group is answered
503, which the agent retries; if a group fails for any other database reason its reports are written
one by one, so that one report that cannot be stored fails alone. Every answer says how long the agent
should wait before its next report (``progress_s``): longer while the writer is behind.

Below all that, and only there, the databases differ: a ``Store`` runs progress.py's statements in one
transaction. On PostgreSQL, ``PsycopgStore``: an asynchronous psycopg connection on daphne's own event
loop, no thread, so no wait for the GIL between the loop and a writer. On SQLite (the demo),
``DjangoStore``: Django's connection, on one thread of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from pydantic import ValidationError

from core import edge, metrics, problems

from . import events, progress
from .api import UNAUTHORIZED, ProgressIn, problem, task_refused

log = logging.getLogger(__name__)

PATH = re.compile(r"/api/agent/v1/tasks/(?P<task_id>[^/]+)/progress")
# The most reports one commit group carries; more wait for the next.
MAX_GROUP = 500
# The store's connection is kept while reports flow and closed after this long without one.
IDLE_CLOSE_S = 60
UNAVAILABLE = "unavailable"
UNSTORABLE = "unstorable"
APPLICATION_NAME = "provisioner agent progress"


class Unavailable(Exception):
    """The database could not be reached: worth sending the report again (503)."""


class Unstorable(Exception):
    """The database refused the statements: a report it cannot store."""


class Store(Protocol):
    """Where the statements of installs/progress.py run: the only part that differs between databases."""

    async def run(self, statements: progress.Statements):
        """Run ``statements`` in one transaction, committed when this returns their answer.
        Raises Unavailable or Unstorable."""

    def release(self) -> None:
        """Let the connection go (idle); the next run connects again."""

    def close(self) -> None:
        """Let everything go (a test's teardown; process exit). Works once the loop is gone too."""


class AgentProgressRoute:
    """ASGI middleware: progress reports here, everything else to ``app``. ``store`` makes a Store for
    an event loop; by default the one for the configured database (``store_for_database``)."""

    def __init__(self, app, store: Callable[[asyncio.AbstractEventLoop], Store] | None = None):
        self.app = app
        self.store = store or store_for_database
        self._writers: dict[asyncio.AbstractEventLoop, _GroupWriter] = {}

    async def __call__(self, scope, receive, send):
        match = None
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            match = PATH.fullmatch(path[len(root) :] if root and path.startswith(root) else path)
        if match is None:
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            # Django serves nothing here: the route answers every method, as the rest of the agent API does.
            refusal = edge.Refusal("method", f"{scope['method']} is not served here; use POST", status=405)
            return await _respond(send, 405, problems.from_refusal(refusal, "method"), extra=[(b"allow", b"POST")])
        status, body = await self._handle(scope, receive, match["task_id"])
        if status is not None:
            await _respond(send, status, body)

    async def _handle(self, scope, receive, task_id: str) -> tuple[int | None, dict]:
        data = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if data is None:
            return None, {}  # the client went away
        if isinstance(data, int):
            return problem(413, f"The report is larger than {data} bytes.")
        token = _bearer(scope)
        if not token:
            return UNAUTHORIZED
        writer = self._writer()
        report, refusal = None, None
        if not data:
            missing = {"loc": ("body", "body"), "msg": "Field required", "type": "missing"}
            refusal = 400, problems.from_validation_errors([missing])
        else:
            try:
                report = ProgressIn.model_validate(edge.load_json_object(data, _header(scope, b"content-type")))
            except edge.Refusal as exc:
                refusal = exc.status, problems.from_refusal(exc)
            except ValidationError as exc:
                refusal = 400, problems.from_validation_errors(_in_body(exc.errors(include_url=False)))
        if refusal is not None:
            metrics.PROGRESS_REPORTS.labels(outcome="refused").inc()
            # Who asks comes first, as everywhere in the agent API: a stranger learns nothing about the body.
            try:
                if not await writer.store.run(progress.holder(token)):
                    return UNAUTHORIZED
            except (Unavailable, Unstorable):
                return _UNAVAILABLE
            return refusal
        outcome = await writer.submit(
            progress.ProgressReport(task_id, report.percent, report.message, report.log, token=token)
        )
        metrics.PROGRESS_REPORTS.labels(outcome=outcome).inc()
        if outcome == progress.Outcome.OK:
            return 200, {"ok": True, "progress_s": writer.progress_s()}
        if outcome == progress.Outcome.UNAUTHORIZED:
            return UNAUTHORIZED
        if outcome == UNAVAILABLE:
            return _UNAVAILABLE
        if outcome == UNSTORABLE:
            return 400, problems.from_refusal(edge.Refusal("body", "could not be stored", kind="unstorable"))
        return task_refused(outcome, task_id)

    def _writer(self) -> _GroupWriter:
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            for old in [lp for lp in self._writers if lp.is_closed()]:
                self._writers.pop(old).close()
            writer = self._writers[loop] = _GroupWriter(loop, self.store(loop))
        return writer

    def close(self) -> None:
        """Close every writer's database connection and thread (a test's teardown; process exit)."""
        while self._writers:
            self._writers.popitem()[1].close()


_UNAVAILABLE = problem(503, "The report could not be stored just now; send it again.")


def store_for_database(loop: asyncio.AbstractEventLoop) -> Store:
    return PsycopgStore() if connection.vendor == "postgresql" else DjangoStore(loop)


class _GroupWriter:
    """The reports of one event loop, written in commit groups through its store."""

    def __init__(self, loop: asyncio.AbstractEventLoop, store: Store):
        self.loop = loop
        self.store = store
        self.pending: list[tuple[progress.ProgressReport, asyncio.Future]] = []
        self.busy = False
        self.idle_timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        self.store.close()

    def submit(self, report: progress.ProgressReport) -> asyncio.Future:
        future = self.loop.create_future()
        self.pending.append((report, future))
        if not self.busy:
            self.busy = True
            self.loop.create_task(self._drain())
        return future

    def progress_s(self) -> float:
        """The agents' reporting interval to ask for now: AGENT_PROGRESS_S, and one more of it for each
        commit group's worth of reports waiting (the database is not keeping up), up to AGENT_PROGRESS_MAX_S."""
        base, behind = settings.AGENT_PROGRESS_S, len(self.pending) // MAX_GROUP
        return min(base * (1 + behind), max(base, settings.AGENT_PROGRESS_MAX_S))

    async def _drain(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        try:
            while self.pending:
                group, self.pending = self.pending[:MAX_GROUP], self.pending[MAX_GROUP:]
                try:
                    results = await self._write([r for r, _ in group])
                except Exception as exc:  # a fault in this code, not in the reports: answer them, go on
                    log.exception("could not write a commit group of %d agent progress report(s)", len(group))
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for result in results:
                    for (_, future), outcome in zip(group, result.outcomes, strict=False):
                        if not future.done():
                            future.set_result(outcome)
                    group = group[len(result.outcomes) :]
                    # Before the next group: each page sees an install's events in order, and a report's
                    # event goes out as soon as it is stored (sending meanwhile, as an outbox would, let
                    # events wait for the round before theirs: +7 ms at 500 reports/s).
                    await events.send([e.as_message() for e in result.events])
                    if result.seen is not None:  # it need not hold up the answers
                        await self._note_seen(result)
        finally:
            self.busy = False
            self.idle_timer = self.loop.call_later(IDLE_CLOSE_S, self._release_if_idle)

    async def _write(self, reports: list[progress.ProgressReport]) -> list[progress.GroupResult]:
        """The group's results: one, or when the group failed for something other than the connection,
        one per report, each written alone so that a report that cannot be stored fails only itself."""
        try:
            return [await self.store.run(progress.group(reports))]
        except Unavailable:
            log.exception("could not store %d agent progress report(s)", len(reports))
            return [progress.GroupResult([UNAVAILABLE] * len(reports), [], None)]
        except Unstorable:
            log.exception("could not store a commit group of %d agent progress report(s)", len(reports))
            if len(reports) == 1:
                return [progress.GroupResult([UNSTORABLE], [], None)]
        results = []
        for report in reports:
            results.extend(await self._write([report]))
        return results

    async def _note_seen(self, result: progress.GroupResult) -> None:
        try:
            await self.store.run(progress.seen(result))
        except (Unavailable, Unstorable) as exc:  # the next report of these installs writes it
            log.warning("could not note when %d agent(s) were last seen: %s", len(result.outcomes), exc)

    def _release_if_idle(self) -> None:
        if not self.busy:
            self.store.release()


class PsycopgStore:
    """PostgreSQL: a connection of the loop's own (asynchronous psycopg), in pipeline mode. The loop never
    waits on a thread, nor a thread on the GIL."""

    def __init__(self):
        self.conn = None
        self.lock = asyncio.Lock()  # one transaction, and nothing else meanwhile, on the connection

    async def run(self, statements: progress.Statements):
        async with self.lock:
            try:
                return await _run_pipelined(await self._connection(), statements)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.release()  # the next run connects afresh
                raise Unavailable(str(exc)) from exc
            except psycopg.Error as exc:
                raise Unstorable(str(exc)) from exc

    async def _connection(self):
        if self.conn is None or self.conn.closed:
            params = connection.get_connection_params()  # Django's: same database, options, adapters
            # Server-side binding and prepared statements: the group's statements keep one text.
            params.update(cursor_factory=psycopg.AsyncCursor, autocommit=True, prepare_threshold=2)
            params["application_name"] = APPLICATION_NAME  # in pg_stat_activity
            self.conn = await psycopg.AsyncConnection.connect(**params)
        return self.conn

    def release(self) -> None:
        # Synchronous, so that it also works once the loop is gone (a test's teardown): libpq's own close.
        if self.conn is not None:
            self.conn.pgconn.finish()
            self.conn = None

    close = release


async def _run_pipelined(conn, statements: progress.Statements):
    """Pipeline mode: statements go out without waiting for earlier answers; the connection waits only
    where the rules need rows (the locked steps), then once more for the last statement's rows and the
    commit together."""
    answer = None
    async with conn.pipeline(), conn.cursor() as cursor:
        async with conn.transaction():
            try:
                while not (statement := statements.send(answer)).last:
                    answer = await _execute_async(cursor, statement)
            except StopIteration as stop:  # no last statement (nothing to insert)
                return stop.value
            await cursor.execute(statement.sql, statement.params)
        try:  # committed: the last statement's rows came with the commit's answer
            statements.send(await cursor.fetchall() if statement.rows else None)
        except StopIteration as stop:
            return stop.value
    raise RuntimeError("progress statements went on after their last statement")


async def _execute_async(cursor, statement: progress.Statement):
    if statement.many:
        await cursor.executemany(statement.sql, statement.params)
        return None
    await cursor.execute(statement.sql, statement.params)
    return await cursor.fetchall() if statement.rows else None


class DjangoStore:
    """Any database Django speaks (SQLite for the demo): Django's connection, on one thread of its own that
    keeps it from group to group."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-progress")

    async def run(self, statements: progress.Statements):
        try:
            return await self.loop.run_in_executor(self.executor, _run_in_transaction, statements)
        except (OperationalError, InterfaceError) as exc:  # the connection was closed on its thread
            raise Unavailable(str(exc)) from exc
        except DatabaseError as exc:
            raise Unstorable(str(exc)) from exc

    def release(self) -> None:
        self.executor.submit(_close_connection)

    def close(self) -> None:
        self.release()
        self.executor.shutdown(wait=True)


def _run_in_transaction(statements: progress.Statements):
    """On the store's thread."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            answer = None
            try:
                while True:
                    answer = _execute(cursor, statements.send(answer))
            except StopIteration as stop:
                return stop.value
    except (InterfaceError, OperationalError):
        connection.close()  # the next run connects afresh
        raise


def _execute(cursor, statement: progress.Statement):
    if statement.many:
        cursor.executemany(statement.sql, statement.params)  # psycopg pipelines these
        return None
    cursor.execute(statement.sql, statement.params)
    return cursor.fetchall() if statement.rows else None


def _close_connection() -> None:
    # A function, not connection.close: the proxy must resolve on the store's thread, not the caller's.
    connection.close()


def _in_body(errors: list[dict]) -> list[dict]:
    """Error locations as the Django view reports them (the body is its parameter named body)."""
    return [{**e, "loc": ("body", "body", *e["loc"])} for e in errors]


def _header(scope, wanted: bytes) -> str:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return value.decode("latin-1")
    return ""


def _bearer(scope) -> str:
    scheme, _, token = _header(scope, b"authorization").partition(" ")
    return token if scheme.lower() == "bearer" else ""


async def _read_body(receive, limit: int | None) -> bytes | int | None:
    """The request body; the limit (an int) when it is larger; None when the client disconnected."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return limit
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send, status: int, body: dict, extra: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json; charset=utf-8" if status < 400 else problems.MEDIA_TYPE.encode()),
        (b"content-length", str(len(payload)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
    ]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
