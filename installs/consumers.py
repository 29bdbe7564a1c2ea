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

Bounded per socket. A replay reads a page of events at a time and sends at most REPLAY_MAX of them, the
newest: daphne buffers whatever a socket is sent until the browser reads it, so what one socket may
make the server hold is what it may be sent, whatever the log's length. When more events follow the
client's id, the older ones are skipped with a notice that points at the log download (the install
page) or asks for a refresh (the dashboard), as the pages themselves show the newest events only.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from accounts.roles import Role, has_role
from core import edge

from .events import DASHBOARD_GROUP, install_group
from .models import Event, EventKind, Install

# Events read per query and sent per websocket frame during a replay: big enough to catch up fast,
# small enough that a browser renders each frame without a pause.
REPLAY_CHUNK = 200
# Events one replay sends at most, the newest: as many as the install page shows (console.views.installs.
# PAGE_EVENTS). A socket can make daphne hold no more than this in its send buffer, however long the log.
REPLAY_MAX = 2000
# Sweep for dropped messages this often while events flow, and this often when all is quiet.
SWEEP_BUSY_S = 1.0
SWEEP_IDLE_S = 5.0
# An event older than this is committed (or never will be: transactions here last milliseconds),
# so the sweep stops looking below it.
SETTLE_S = 5.0
# channels_redis forgets a group's member after its group_expiry (a day), and a Redis restart forgets
# every group: a socket joins its group again this often, so a tab left open for days keeps its live
# events (the database sweep would still bring them, seconds late).
GROUP_REJOIN_S = 60.0
# A client sends one small message ({"after": <id>}); a frame larger than this is not read at all.
CLIENT_FRAME_MAX = 4096
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class _EventStream(AsyncJsonWebsocketConsumer):
    group: str = ""
    replay_max: int = REPLAY_MAX
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
        self.highest = 0  # the highest id sent
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

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is not None:  # binary frames mean nothing here
            await super().receive(text_data=text_data, **kwargs)

    @classmethod
    async def decode_json(cls, text_data):
        """A frame as one bounded JSON object, or None: a client's frame, however large, deep or odd its
        numbers, costs no more than this and never ends the socket."""
        try:
            return edge.load_json_object(text_data.encode(), "application/json", max_bytes=CLIENT_FRAME_MAX)
        except (edge.Refusal, UnicodeEncodeError):
            return None

    async def receive_json(self, content, **kwargs):
        """Only {"after": <id>}, once, is understood; anything else is ignored."""
        after = _int(content.get("after")) if isinstance(content, dict) else None
        if after is not None and not self.replayed:
            await self.replay(after)

    async def replay(self, after: int):
        """The stored events after ``after``, a page per query and frame, at most replay_max of them."""
        self.replayed = True
        self.floor = after  # a replay asked by message may reach below what the connect assumed
        start = await database_sync_to_async(self.replay_start)(after)
        if start > after:
            await self.send_json(self.skipped(after, start))
            self.floor = start
        cursor, budget = start, self.replay_max
        while budget > 0:
            page, settled = await database_sync_to_async(self.stored_page)(cursor, min(REPLAY_CHUNK, budget))
            if not page:
                break
            await self.send_events(page)
            self.settle(settled)
            cursor, budget = page[-1]["id"], budget - len(page)
        await self.send_json({"replayed": max(after, cursor, self.highest)})

    def skipped(self, after: int, start: int) -> dict:
        """The notice for events replay_max left out (ids after ``after``, up to ``start``)."""
        return {"resync": True}

    async def send_events(self, events: list[dict]) -> None:
        fresh = [e for e in events if e["id"] not in self.sent and e["id"] > self.floor]
        self.sent.update(e["id"] for e in fresh)
        self.highest = max([self.highest, *(e["id"] for e in fresh)])
        for i in range(0, len(fresh), REPLAY_CHUNK):
            await self.send_json({"events": fresh[i : i + REPLAY_CHUNK]})

    def settle(self, settled: int) -> None:
        """Every event at or below ``settled`` is committed and sent: forget their ids."""
        if settled > self.floor:
            self.floor = settled
            self.sent = {i for i in self.sent if i > self.floor}

    async def install_events(self, message):
        """Live events from the channel layer (installs/events.py), a batch per message."""
        self.activity.set()
        await self.send_events(message["events"])

    async def sweep_forever(self):
        joined = asyncio.get_running_loop().time()
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.activity.wait(), SWEEP_IDLE_S)
                self.activity.clear()
                await asyncio.sleep(SWEEP_BUSY_S)  # a second's worth of live events in one query
                await self.sweep()
                if asyncio.get_running_loop().time() - joined >= GROUP_REJOIN_S:
                    await self.channel_layer.group_add(self.group, self.channel_name)
                    joined = asyncio.get_running_loop().time()

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
        self.settle(max((i for i, at in rows if at < settled_before), default=0))

    def events(self):
        """This stream's events (a queryset)."""
        raise NotImplementedError

    def replay_start(self, after: int) -> int:
        """``after``, or the id past which the newest replay_max events lie when more follow it."""
        older = self.events().filter(id__gt=after).order_by("-id").values_list("id", flat=True)
        boundary = list(older[self.replay_max : self.replay_max + 1])
        return boundary[0] if boundary else after

    def stored_page(self, after: int, size: int) -> tuple[list[dict], int]:
        """Up to ``size`` events after ``after``, and the highest id among them that has settled."""
        events = list(self.events().filter(id__gt=after).order_by("id")[:size])
        settled_before = timezone.now() - timedelta(seconds=SETTLE_S)
        return [e.as_message() for e in events], max((e.pk for e in events if e.at < settled_before), default=0)

    def stored_ids_after(self, after: int) -> list[tuple[int, datetime]]:
        return list(self.events().filter(id__gt=after).order_by("id").values_list("id", "at")[: self.replay_max])

    def stored_by_ids(self, ids: list[int]) -> list[dict]:
        return [e.as_message() for e in self.events().filter(id__in=ids).order_by("id")]

    def newest_id(self) -> int:
        return self.events().aggregate(m=Max("id"))["m"] or 0


class InstallConsumer(_EventStream):
    """ws/installs/<id>/[?after=<event id>]: that install's events, replayed then live."""

    def skipped(self, after: int, start: int) -> dict:
        # The page shows a line where the gap is, with the link to the whole log.
        return {"gap": {"after": after, "upto": start, "log": reverse("install-log", args=[self.install_id])}}

    async def allowed(self) -> bool:
        self.install_id = int(self.scope["url_route"]["kwargs"]["install_id"])
        self.group = install_group(self.install_id)
        return await database_sync_to_async(Install.objects.filter(pk=self.install_id).exists)()

    def events(self):
        return Event.objects.filter(install_id=self.install_id)


class DashboardConsumer(_EventStream):
    """ws/dashboard/[?after=<event id>]: every install's events except log lines."""

    group = DASHBOARD_GROUP

    def events(self):
        return Event.objects.exclude(kind=EventKind.LOG)


def _int(value) -> int | None:
    """An event id from the query string or a client's message: digits an id column holds, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return edge.int_param(value) if isinstance(value, str) else None
