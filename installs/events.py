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

from django.db import transaction

from .models import Event, EventKind

log = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"


def install_group(install_id: int) -> str:
    return f"install-{install_id}"


def emit_many(events: list[Event]) -> list[Event]:
    """Insert unsaved events in one query; published, like emit's, when the transaction commits."""
    if not events:
        return []
    created = Event.objects.bulk_create(events)
    transaction.on_commit(lambda: publish(created))
    return created


def emit(install, kind: str, message: str = "", *, step=None, data: dict | None = None) -> Event:
    event = Event.objects.create(install=install, step=step, kind=kind, message=message[:10000], data=data or {})
    # Published only if the transaction commits: a rolled-back event was never true.
    transaction.on_commit(lambda: publish([event]))
    return event


class _Publisher:
    """One sender per process: messages queue up and go out one at a time on one Redis connection.
    A coroutine per event, as before, opened connections without bound under bursts and Redis
    refused them ("Too many connections"), dropping events."""

    # Past this backlog new messages are dropped (browsers replay from the database on reconnect).
    MAX_BACKLOG = 10000

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.backlog = 0
        self._queue: asyncio.Queue | None = None
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self._queue = asyncio.Queue()
            self.loop.create_task(self._drain())
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, name="event-publisher", daemon=True).start()
        ready.wait()

    def submit(self, messages: list[tuple[str, dict]]) -> None:
        if self.backlog >= self.MAX_BACKLOG:
            log.warning("event publisher backlog full; %d message(s) left to replay", len(messages))
            return
        self.backlog += len(messages)
        self.loop.call_soon_threadsafe(self._queue.put_nowait, messages)

    async def _drain(self):
        from channels.layers import get_channel_layer

        while True:
            messages = await self._queue.get()
            self.backlog -= len(messages)
            layer = get_channel_layer()
            if layer is None:
                continue
            try:
                for group, message in messages:
                    await layer.group_send(group, message)
            except Exception as exc:  # the events are in the database; a Redis hiccup must not matter
                log.warning("could not publish %d event message(s): %s", len(messages), exc)


_publisher: _Publisher | None = None
_publisher_lock = threading.Lock()


def _get_publisher() -> _Publisher:
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher.pid != os.getpid():  # a forked child needs its own loop
            _publisher = _Publisher()
        return _publisher


# Events per channel-layer message: a batch of agent reports becomes a few messages per group
# rather than one per event, and no message grows past what a browser renders in one go.
EVENTS_PER_MESSAGE = 50


def messages_for(events: list[Event]) -> list[tuple[str, dict]]:
    """One message per group per EVENTS_PER_MESSAGE events, in id order."""
    by_group: dict[str, list[dict]] = {}
    for event in events:
        body = event.as_message()
        by_group.setdefault(install_group(event.install_id), []).append(body)
        if event.kind != EventKind.LOG:  # log lines go only to the install's own page
            by_group.setdefault(DASHBOARD_GROUP, []).append(body)
    return [
        (group, {"type": "install.events", "events": bodies[i : i + EVENTS_PER_MESSAGE]})
        for group, bodies in by_group.items()
        for i in range(0, len(bodies), EVENTS_PER_MESSAGE)
    ]


def publish(events: list[Event]) -> None:
    if events:
        _get_publisher().submit(messages_for(events))
