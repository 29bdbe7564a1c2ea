"""A Terminal's link to its channel-layer group, for a holder that is not a websocket consumer (manage.py ssh).

The group ``ssh-session-<id>`` carries the session's output (``session.output``, base64) and its end
(``session.ended``) to read-only watchers in any web process, and carries an admin's ``session.end`` back to
whichever process holds the session. The websocket consumer joins the group itself; this is the same for
a process without one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging

from channels.layers import get_channel_layer

from .models import SessionEnd
from .terminal import Terminal, group_name

log = logging.getLogger(__name__)


class GroupLink:
    def __init__(self, terminal: Terminal):
        self.terminal = terminal
        self.group = group_name(terminal.session_id)
        self.layer = get_channel_layer()
        self.channel = ""
        self._listener: asyncio.Task | None = None

    async def join(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        self._listener = asyncio.create_task(self._listen())

    async def output(self, data: bytes) -> None:
        await self._send({"type": "session.output", "data": base64.b64encode(data).decode()})

    async def ended(self, session) -> None:
        await self._send({"type": "session.ended", "reason": session.end_reason, "message": session.end_message})
        await self.leave()

    async def leave(self) -> None:
        if self._listener is not None and self._listener is not asyncio.current_task():
            self._listener.cancel()
        if self.channel:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(self.group, self.channel)
            self.channel = ""

    async def _send(self, message: dict) -> None:
        try:
            await self.layer.group_send(self.group, message)
        except Exception:  # watchers miss a chunk; the session and its recording go on
            log.warning("ssh session %s: could not publish to its group", self.terminal.session_id, exc_info=True)

    async def _listen(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("ssh session %s: group receive failed", self.terminal.session_id, exc_info=True)
                await asyncio.sleep(1)
                continue
            if message.get("type") == "session.end":
                by = message.get("by_label", "an admin")
                asyncio.ensure_future(self.terminal.close(SessionEnd.ENDED, f"ended by {by}", message.get("by")))
                return
