"""Websockets for browsers: one install's events, and the dashboard stream (every install's events
but log lines) that the dashboard, machine list and rack view refresh themselves from.

Read-only by construction: the only message a client may send is "replay after id N"; nothing a
client sends changes anything, so a viewer's socket is as safe as a technician's. Anonymous sockets
and users without a role are closed before accept.

Nothing lost, nothing doubled. The consumer joins its group *before* it reads the stored events after
the client's last id, and remembers the ids it has sent, so an event that arrives both ways is sent
once. The live path can drop a message (Redis busy, a full channel, a publisher error: the channel
layer drops rather than blocks), so the consumer also sweeps the database for events it has not sent,
every second while the install is busy: a dropped message arrives late instead of never.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import Max
from django.utils import timezone

from provisioner.accounts.roles import Role, has_role

from .events import DASHBOARD_GROUP, install_group
from .models import Event, EventKind, Install

# Events sent per websocket frame during a replay: big enough to catch up fast, small enough that
# a browser renders each frame without a pause.
REPLAY_CHUNK = 200
# The dashboard replays at most this many events; after a longer absence it re-fetches its partials.
DASHBOARD_REPLAY_MAX = 2000
# Sweep for dropped messages this often while events flow, and this often when all is quiet.
SWEEP_BUSY_S = 1.0
SWEEP_IDLE_S = 5.0
# An event older than this is committed (or never will be: transactions here last milliseconds),
# so the sweep stops looking below it.
SETTLE_S = 5.0
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class _EventStream(AsyncJsonWebsocketConsumer):
    group: str = ""
    replay_max: int = DASHBOARD_REPLAY_MAX
    sweeper: asyncio.Task | None = None

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(has_role)(user, Role.VIEWER):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if not await self.allowed():
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.sent: set[int] = set()  # ids sent above the floor
        self.floor = 0  # every event at or below it has been sent, or came before the client's view
        self.replayed = False
        self.activity = asyncio.Event()  # set by live events: the sweep follows them within a second
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        after = _int(parse_qs(self.scope.get("query_string", b"").decode()).get("after", [""])[0])
        if after is not None:
            await self.replay(after)
        else:
            self.floor = await database_sync_to_async(self.newest_id)()
        self.sweeper = asyncio.create_task(self.sweep_forever())

    async def allowed(self) -> bool:
        return True

    async def disconnect(self, code):
        if self.sweeper is not None:
            self.sweeper.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Only {"after": <id>}, once, is understood; anything else is ignored."""
        after = _int(content.get("after")) if isinstance(content, dict) else None
        if after is not None and not self.replayed:
            await self.replay(after)

    async def replay(self, after: int):
        self.replayed = True
        self.floor = after  # a replay asked by message may reach below what the connect assumed
        events, complete = await database_sync_to_async(self.stored_after)(after)
        if not complete:
            await self.send_json({"resync": True})
        await self.send_events(events)
        await self.send_json({"replayed": max([after, *self.sent])})

    async def send_events(self, events: list[dict]) -> None:
        fresh = [e for e in events if e["id"] not in self.sent and e["id"] > self.floor]
        self.sent.update(e["id"] for e in fresh)
        for i in range(0, len(fresh), REPLAY_CHUNK):
            await self.send_json({"events": fresh[i : i + REPLAY_CHUNK]})

    async def install_events(self, message):
        """Live events from the channel layer (installs/events.py), a batch per message."""
        self.activity.set()
        await self.send_events(message["events"])

    async def sweep_forever(self):
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.activity.wait(), SWEEP_IDLE_S)
                self.activity.clear()
                await asyncio.sleep(SWEEP_BUSY_S)  # a second's worth of live events in one query
                await self.sweep()

    async def sweep(self):
        """Ids and times first (cheap), whole events only for the ids not sent: most sweeps find the
        live path delivered everything and read no message text at all."""
        rows = await database_sync_to_async(self.stored_ids_after)(self.floor)
        if not rows:
            return
        missing = [i for i, _ in rows if i not in self.sent]
        if missing:
            await self.send_events(await database_sync_to_async(self.stored_by_ids)(missing))
        settled_before = timezone.now() - timedelta(seconds=SETTLE_S)
        settled = [i for i, at in rows if at < settled_before]
        if settled:
            self.floor = max(self.floor, max(settled))
            self.sent = {i for i in self.sent if i > self.floor}

    def events(self):
        """This stream's events (a queryset)."""
        raise NotImplementedError

    def stored_after(self, after: int) -> tuple[list[dict], bool]:
        events = list(self.events().filter(id__gt=after).order_by("id")[: self.replay_max + 1])
        return [e.as_message() for e in events[: self.replay_max]], len(events) <= self.replay_max

    def stored_ids_after(self, after: int) -> list[tuple[int, datetime]]:
        return list(self.events().filter(id__gt=after).order_by("id").values_list("id", "at")[: self.replay_max])

    def stored_by_ids(self, ids: list[int]) -> list[dict]:
        return [e.as_message() for e in self.events().filter(id__in=ids).order_by("id")]

    def newest_id(self) -> int:
        return self.events().aggregate(m=Max("id"))["m"] or 0


class InstallConsumer(_EventStream):
    """ws/installs/<id>/[?after=<event id>]: that install's events, replayed then live."""

    # An install's whole log, however long: the page asked for everything after its last line.
    replay_max = 1_000_000

    async def allowed(self) -> bool:
        self.install_id = int(self.scope["url_route"]["kwargs"]["install_id"])
        self.group = install_group(self.install_id)
        return await database_sync_to_async(Install.objects.filter(pk=self.install_id).exists)()

    def events(self):
        return Event.objects.filter(install_id=self.install_id)


class DashboardConsumer(_EventStream):
    """ws/dashboard/[?after=<event id>]: every install's events except log lines."""

    group = DASHBOARD_GROUP
    replay_max = DASHBOARD_REPLAY_MAX

    def events(self):
        return Event.objects.exclude(kind=EventKind.LOG)


def _int(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None
