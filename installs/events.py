"""Events: written to the database first, then published to browsers when the transaction commits.

Browsers watching an install join its group; the dashboard group gets every event. A browser
that misses a message can always replay from the database (the event id orders replay).

Publishing is fire-and-forget on one event loop per process: a worker moving hundreds of
installs must not pay for a new loop and Redis connection per event (async_to_sync does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from channels.layers import get_channel_layer
from django.db import connection, transaction
from redis.exceptions import RedisError

from .models import Event, EventKind

log = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"


def install_group(install_id: int) -> str:
    return f"install-{install_id}"


def insert_statement(events: list[Event]) -> tuple[str, list]:
    """INSERT ... RETURNING id for unsaved events, with parameters prepared as the ORM would."""
    fields = [f for f in Event._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = "INSERT INTO {} ({}) VALUES {} RETURNING {}".format(
        quote(Event._meta.db_table),
        ", ".join(quote(f.column) for f in fields),
        ", ".join([row] * len(events)),
        quote(Event._meta.pk.column),
    )
    return sql, [f.get_db_prep_save(f.pre_save(event, True), connection) for event in events for f in fields]


def adopt_ids(events: list[Event], rows) -> list[Event]:
    """The ids RETURNING gave, in VALUES order (PostgreSQL and SQLite keep it; bulk_create relies on it too)."""
    for event, (pk,) in zip(events, rows, strict=True):
        event.pk = pk
        event._state.adding = False
        event._state.db = connection.alias
    return events


def emit(install, kind: str, message: str = "", *, step=None, data: dict | None = None) -> Event:
    event = Event.objects.create(install=install, step=step, kind=kind, message=message[:10000], data=data or {})
    # Published only if the transaction commits: a rolled-back event was never true.
    transaction.on_commit(lambda: publish([event]))
    return event


class _Publisher:
    """One sender per process, on a loop thread of its own, for code that is not on a loop (views,
    RQ workers): what queues while a round goes out goes out together (send), and one sender keeps
    each group's events in order. (A coroutine per event, as once, opened connections without bound
    under bursts and Redis refused them: "Too many connections".)"""

    # Past this backlog new events are not published (browsers replay from the database).
    MAX_BACKLOG = 10000

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.pending: list[dict] = []  # touched only on the loop
        self.busy = False
        threading.Thread(target=self.loop.run_forever, name="event-publisher", daemon=True).start()

    def submit(self, events: list[dict]) -> None:
        self.loop.call_soon_threadsafe(self._queue, events)

    def _queue(self, events: list[dict]) -> None:
        if len(self.pending) >= self.MAX_BACKLOG:
            log.warning("event publisher backlog full; %d event(s) left to replay", len(events))
            return
        self.pending.extend(events)
        if events and not self.busy:
            self.busy = True
            self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.pending:
                events, self.pending = self.pending, []
                await send(events)
        finally:
            self.busy = False


async def send(events: list[dict]) -> None:
    """Events (as_message dicts) to the groups with a socket in them, a message per group, on the
    running loop. Never raises for Redis: the events are in the database, and a Redis hiccup must not matter."""
    layer = get_channel_layer()
    if layer is None or not events:
        return
    messages = messages_for(events)
    try:
        watched = await _groups_with_members(layer, list(dict.fromkeys(g for g, _ in messages)))
        for group, message in messages:
            if group in watched:
                await layer.group_send(group, message)
    except (RedisError, OSError, TimeoutError) as exc:  # unreachable, refused, or too slow to answer
        log.warning("could not publish %d event(s): %s", len(events), exc)


async def _groups_with_members(layer, groups: list[str]) -> set[str]:
    """The groups with a member, asked in one pipelined round trip per Redis host.

    Written against channels_redis 4.3.0 (requirements.lock), whose RedisChannelLayer has no public way to
    ask whether a group has members, while group_send costs two round trips even for an empty group and
    most installs have no page open. So this one function reads the layer's internals the way group_send
    does: ``_group_key`` (private), ``consistent_hash``, ``group_expiry`` and ``connection``. A layer
    without them (another backend, or a channels_redis that changed them) is told about every group; when
    upgrading channels_redis, check these names still mean what they do in 4.3.0."""
    group_key = getattr(layer, "_group_key", None)
    if group_key is None or not hasattr(layer, "consistent_hash") or not hasattr(layer, "group_expiry"):
        return set(groups)
    by_host: dict[int, list[str]] = {}
    for group in groups:
        by_host.setdefault(layer.consistent_hash(group), []).append(group)
    since = int(time.time()) - layer.group_expiry  # members older than this are expired (group_send's rule)
    found = set()
    for index, host_groups in by_host.items():
        pipe = layer.connection(index).pipeline(transaction=False)
        for group in host_groups:
            pipe.zcount(group_key(group), since, "+inf")
        counts = await pipe.execute()
        found.update(g for g, count in zip(host_groups, counts, strict=True) if count)
    return found


_publisher: _Publisher | None = None
_publisher_lock = threading.Lock()


def _get_publisher() -> _Publisher:
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher.pid != os.getpid():  # a forked child needs its own loop
            _publisher = _Publisher()
        return _publisher


# Events per channel-layer message: a commit group of agent reports becomes a few messages per group
# rather than one per event, and no message grows past what a browser renders in one go.
EVENTS_PER_MESSAGE = 50


def messages_for(events: list[dict]) -> list[tuple[str, dict]]:
    """One message per group per EVENTS_PER_MESSAGE events (as_message dicts), in id order."""
    by_group: dict[str, list[dict]] = {}
    for event in events:
        by_group.setdefault(install_group(event["install"]), []).append(event)
        if event["kind"] != EventKind.LOG:  # log lines go only to the install's own page
            by_group.setdefault(DASHBOARD_GROUP, []).append(event)
    return [
        (group, {"type": "install.events", "events": bodies[i : i + EVENTS_PER_MESSAGE]})
        for group, bodies in by_group.items()
        for i in range(0, len(bodies), EVENTS_PER_MESSAGE)
    ]


def publish(events: list[Event]) -> None:
    if events:
        _get_publisher().submit([event.as_message() for event in events])
