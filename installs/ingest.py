"""Agent progress reports on a path of their own, written to the database in batches.

Progress is the call machines make most: each agent reports about once a second while a task runs,
so a site installing 500 machines sends about 500 reports a second. Through Django's request cycle
(a thread per request, the middleware, the ORM per report) one report cost about 9 ms of CPU and a
2-core control plane topped out below 100 a second. This ASGI app answers
``POST /api/agent/v1/tasks/<id>/progress`` itself and passes every other request to Django.

Reports that arrive while a batch is being written wait for the next one (group commit): each batch
is one transaction of a few statements however many reports it carries, so the cost per report
falls as the rate rises, and a lone report is written at once. On PostgreSQL the batches go through
an asynchronous psycopg connection on daphne's own event loop, and their events are published from
it too: no thread, so no wait for the GIL between the loop and a writer. (SQLite, for the demo,
writes on one thread with Django's connection.) The agent is answered only after its report is
committed. The rules are installs/progress.py's, which the Django view shares; the body is checked
by the same loader (core/edge.py) and schema, and refusals read the same as the view's
(docs/agent-api.md): a report the database could not store never joins a batch. If the database
cannot be reached the batch is answered 503, which the agent retries; if a batch fails for any other
reason its reports are written one by one, so that one report that cannot be stored fails alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from pydantic import ValidationError

from core import edge, problems

from . import credentials, events, progress
from .api import UNAUTHORIZED, ProgressIn, invalid_body, problem, refused, task_refused

log = logging.getLogger(__name__)

PATH = re.compile(r"/api/agent/v1/tasks/(?P<task_id>[^/]+)/progress")
# The most reports one transaction carries; more wait for the next.
MAX_BATCH = 500
# The writer's connection is kept while reports flow and closed after this long without one.
IDLE_CLOSE_S = 60
UNAVAILABLE = "unavailable"
UNSTORABLE = "unstorable"
# The database, not the report: worth sending again (503).
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OperationalError, InterfaceError)
APPLICATION_NAME = "provisioner agent progress"


class AgentProgressRoute:
    """ASGI middleware: progress reports here, everything else to ``app``."""

    def __init__(self, app):
        self.app = app
        self._writers: dict[asyncio.AbstractEventLoop, _BatchWriter] = {}

    async def __call__(self, scope, receive, send):
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            root = scope.get("root_path", "")
            match = PATH.fullmatch(path[len(root) :] if root and path.startswith(root) else path)
        if match is None:
            return await self.app(scope, receive, send)
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
        report, refusal = None, None
        if not data:
            refusal = 400, invalid_body([{"loc": ("body", "body"), "msg": "Field required", "type": "missing"}])
        else:
            try:
                report = ProgressIn.model_validate(edge.load_json_object(data, _header(scope, b"content-type")))
            except edge.Refusal as exc:
                refusal = exc.status, refused(exc)
            except ValidationError as exc:
                refusal = 400, invalid_body(_in_body(exc.errors(include_url=False)))
        if refusal is not None:
            # Who asks comes first, as in the Django view: a stranger learns nothing about the body.
            if not await self._writer().store.authenticates(token):
                return UNAUTHORIZED
            return refusal
        outcome = await self._writer().submit(
            progress.ProgressReport(task_id, report.percent, report.message, report.log, token=token)
        )
        if outcome == progress.Outcome.OK:
            return 200, {"ok": True}
        if outcome == progress.Outcome.UNAUTHORIZED:
            return UNAUTHORIZED
        if outcome == UNAVAILABLE:
            return problem(503, "The report could not be stored just now; send it again.")
        if outcome == UNSTORABLE:
            return 400, refused(edge.Refusal("body", "could not be stored", kind="unstorable"))
        return task_refused(outcome, task_id)

    def _writer(self) -> _BatchWriter:
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            for old in [lp for lp in self._writers if lp.is_closed()]:
                self._writers.pop(old).close()
            writer = self._writers[loop] = _BatchWriter(loop)
        return writer

    def close(self) -> None:
        """Close every writer's database connection and thread (a test's teardown; process exit)."""
        while self._writers:
            self._writers.popitem()[1].close()


class _BatchWriter:
    """The reports of one event loop, written in batches: on PostgreSQL by a connection of the loop's
    own (asynchronous psycopg: the loop never waits on a thread, nor a thread on the GIL); on SQLite
    (the demo) by one thread with Django's connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending: list[tuple[progress.ProgressReport, asyncio.Future]] = []
        self.busy = False
        self.store = _AsyncStore() if connection.vendor == "postgresql" else _ThreadStore(loop)
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

    async def _drain(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        try:
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                for result in await self._write([r for r, _ in batch]):
                    for (_, future), outcome in zip(batch, result.outcomes, strict=False):
                        if not future.done():
                            future.set_result(outcome)
                    batch = batch[len(result.outcomes) :]
                    # Before the next batch: each page sees an install's events in order, and a report's
                    # event goes out as soon as it is stored (sending meanwhile, as an outbox would, let
                    # events wait for the round before theirs: +7 ms at 500 reports/s).
                    await events.send([e.as_message() for e in result.events])
                    if result.seen is not None:  # it need not hold up the answers
                        await self.store.note_seen(result)
        finally:
            self.busy = False
            self.idle_timer = self.loop.call_later(IDLE_CLOSE_S, self._close_if_idle)

    async def _write(self, reports: list[progress.ProgressReport]) -> list[progress.BatchResult]:
        """The batch's results: one, or when the batch failed for something other than the connection,
        one per report, each written alone so that a report that cannot be stored fails only itself."""
        try:
            return [await self.store.write(reports)]
        except CONNECTION_ERRORS:
            log.exception("could not store %d agent progress report(s)", len(reports))
            return [progress.BatchResult([UNAVAILABLE] * len(reports), [], None)]
        except Exception:
            log.exception("could not store a batch of %d agent progress report(s)", len(reports))
            if len(reports) == 1:
                return [progress.BatchResult([UNSTORABLE], [], None)]
        results = []
        for report in reports:
            results.extend(await self._write([report]))
        return results

    def _close_if_idle(self) -> None:
        if not self.busy:
            self.store.close_idle()


class _AsyncStore:
    def __init__(self):
        self.conn = None
        self.lock = asyncio.Lock()  # a batch's transaction, and nothing else meanwhile, on the connection

    async def connection(self):
        if self.conn is None or self.conn.closed:
            params = connection.get_connection_params()  # Django's: same database, options, adapters
            # Server-side binding and prepared statements: the batch's statements keep one text.
            params.update(cursor_factory=psycopg.AsyncCursor, autocommit=True, prepare_threshold=2)
            params["application_name"] = APPLICATION_NAME  # in pg_stat_activity
            self.conn = await psycopg.AsyncConnection.connect(**params)
        return self.conn

    async def write(self, reports: list[progress.ProgressReport]) -> progress.BatchResult:
        """Committed when it returns; the caller sends the events, then has ``seen`` written."""
        return await self._locked(progress.agent_progress_async, reports)

    async def authenticates(self, token: str) -> bool:
        return await self._locked(progress.holder_async, token)

    async def note_seen(self, result: progress.BatchResult) -> None:
        try:
            await self._locked(progress.note_seen_async, result)
        except psycopg.Error as exc:  # the next report of these installs writes it
            log.warning("could not note when %d agent(s) were last seen: %s", len(result.outcomes), exc)

    async def _locked(self, fn, arg):
        async with self.lock:
            try:
                return await fn(await self.connection(), arg)
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self.close()  # the next call connects afresh
                raise

    def close(self) -> None:
        # Synchronous, so that it also works once the loop is gone (a test's teardown): libpq's own close.
        if self.conn is not None:
            self.conn.pgconn.finish()
            self.conn = None

    close_idle = close


class _ThreadStore:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-progress")

    async def write(self, reports: list[progress.ProgressReport]) -> progress.BatchResult:
        # Django's driver publishes the events and notes agent_seen_at itself, on its thread.
        return progress.BatchResult(await self.loop.run_in_executor(self.executor, _write, reports), [], None)

    async def authenticates(self, token: str) -> bool:
        return await self.loop.run_in_executor(self.executor, lambda: credentials.agent_install(token) is not None)

    def close(self) -> None:
        self.executor.submit(_close_connection)
        self.executor.shutdown(wait=True)

    def close_idle(self) -> None:
        self.executor.submit(_close_connection)


def _write(reports: list[progress.ProgressReport]) -> list[str]:
    """On the writer's thread, which keeps its database connection from batch to batch."""
    try:
        return progress.agent_progress_many(reports)
    except (InterfaceError, OperationalError):
        connection.close()  # the next batch connects afresh
        raise


def _in_body(errors: list[dict]) -> list[dict]:
    """Error locations as the Django view reports them (the body is its parameter named body)."""
    return [{**e, "loc": ("body", "body", *e["loc"])} for e in errors]


def _close_connection() -> None:
    # A function, not connection.close: the proxy must resolve on the writer's thread, not the caller's.
    connection.close()


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


async def _respond(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json; charset=utf-8" if status < 400 else problems.MEDIA_TYPE.encode()),
        (b"content-length", str(len(payload)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
    ]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
