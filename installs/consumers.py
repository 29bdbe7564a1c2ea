"""Websockets for browsers: one install's events, and the dashboard stream (every install's events
but log lines) that the dashboard, machine list and rack view refresh themselves from.

Read-only by construction: the only message a client may send is "replay after id N"; nothing a
client sends changes anything, so a viewer's socket is as safe as a technician's. Anonymous sockets
and users without a role are closed before accept.

Nothing lost, nothing doubled: the consumer joins its group *before* it reads the stored events
after the client's last id, then forwards live events whose id it has not sent yet. An event
committed while it replays arrives both ways and is sent once.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from provisioner.accounts.roles import Role, has_role

from .events import DASHBOARD_GROUP, install_group
from .models import Event, EventKind, Install

# Events sent per websocket frame during a replay: big enough to catch up fast, small enough that
# a browser renders each frame without a pause.
REPLAY_CHUNK = 200
# The dashboard replays at most this many events; after a longer absence it re-fetches its partials.
DASHBOARD_REPLAY_MAX = 2000
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class _EventStream(AsyncJsonWebsocketConsumer):
    group: str = ""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(has_role)(user, Role.VIEWER):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if not await self.allowed():
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.sent_up_to = 0
        self.replayed = False
        self.sent_live: set[int] = set()  # ids sent before a replay asked for by message
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        after = _int(parse_qs(self.scope.get("query_string", b"").decode()).get("after", [""])[0])
        if after is not None:
            await self.replay(after)

    async def allowed(self) -> bool:
        return True

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Only {"after": <id>}, once, is understood; anything else is ignored."""
        after = _int(content.get("after")) if isinstance(content, dict) else None
        if after is not None and not self.replayed:
            await self.replay(after)

    async def replay(self, after: int):
        self.replayed = True
        events, complete = await database_sync_to_async(self.stored_after)(after)
        if not complete:
            await self.send_json({"resync": True})
        events = [e for e in events if e["id"] not in self.sent_live]
        for i in range(0, len(events), REPLAY_CHUNK):
            await self.send_json({"events": events[i : i + REPLAY_CHUNK]})
        self.sent_up_to = max([after, self.sent_up_to, *(e["id"] for e in events)])
        self.sent_live.clear()
        await self.send_json({"replayed": self.sent_up_to})

    def stored_after(self, after: int) -> tuple[list[dict], bool]:
        raise NotImplementedError

    async def install_event(self, message):
        event = message["event"]
        if event["id"] <= self.sent_up_to:
            return  # already sent by the replay
        self.sent_up_to = event["id"]
        if not self.replayed:
            self.sent_live.add(event["id"])
        await self.send_json({"event": event})


class InstallConsumer(_EventStream):
    """ws/installs/<id>/[?after=<event id>]: that install's events, replayed then live."""

    async def allowed(self) -> bool:
        self.install_id = int(self.scope["url_route"]["kwargs"]["install_id"])
        self.group = install_group(self.install_id)
        return await database_sync_to_async(Install.objects.filter(pk=self.install_id).exists)()

    def stored_after(self, after):
        events = Event.objects.filter(install_id=self.install_id, id__gt=after).order_by("id")
        return [e.as_message() for e in events.iterator(chunk_size=2000)], True


class DashboardConsumer(_EventStream):
    """ws/dashboard/[?after=<event id>]: every install's events except log lines."""

    group = DASHBOARD_GROUP

    def stored_after(self, after):
        events = list(
            Event.objects.filter(id__gt=after).exclude(kind=EventKind.LOG).order_by("id")[: DASHBOARD_REPLAY_MAX + 1]
        )
        complete = len(events) <= DASHBOARD_REPLAY_MAX
        return [e.as_message() for e in events[:DASHBOARD_REPLAY_MAX]], complete


def _int(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None
