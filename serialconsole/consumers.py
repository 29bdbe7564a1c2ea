"""ws/machines/<hostname>/console/: a machine's serial console in the browser (static/js/serial-console.js).

Technicians only: a viewer's (or anonymous) socket is closed before accept. Frames:

* server to browser: binary frames are the serial port's bytes, for xterm.js to write; text frames are JSON:
  ``{"type": "state", "writer": "alice", "you": "writer"|"watcher", "viewers": [...]}`` whenever who has the
  keyboard changes, ``{"type": "refused", "message": ...}`` for input from a watcher, ``{"type": "error",
  "message": ...}`` when the console cannot be opened, ``{"type": "ended", "message": ...}`` when it ends.
* browser to server: binary frames are keystrokes (from the writer only); text ``{"type": "take"}`` takes the
  keyboard.
"""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.roles import Role, has_role
from audit.context import source_ip
from audit.service import Actor
from inventory.models import Machine
from provisioner.bmc import BmcError

from . import hub

log = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_REFUSED = 4409
CLOSE_ENDED = 4000
# A keystroke frame (or a paste) larger than this is refused, not sent: the serial port runs at 115200 baud.
INPUT_FRAME_MAX = 4096
CONTROL_FRAME_MAX = 256


class SerialConsoleConsumer(AsyncWebsocketConsumer):
    member: hub.Member | None = None
    console: hub.ConsoleHub | None = None
    gone = False  # the browser left (perhaps while the console was still being opened)

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(has_role)(user, Role.TECHNICIAN):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        hostname = self.scope["url_route"]["kwargs"]["hostname"]
        machine_id = await database_sync_to_async(
            lambda: Machine.objects.filter(hostname=hostname).values_list("pk", flat=True).first()
        )()
        if machine_id is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.accept()
        client = self.scope.get("client")
        source_ip.set(client[0] if client else None)
        try:
            console, member = await hub.join(machine_id, self, user, Actor.for_user(user))
        except (hub.ConsoleRefused, BmcError) as exc:
            await self.send(text_data=json.dumps({"type": "error", "message": str(exc)}))
            await self.close(code=CLOSE_REFUSED)
            return
        if self.gone:  # left while SOL came up: do not hold the console for a browser that is not there
            await console.remove(member)
            return
        self.console, self.member = console, member

    async def disconnect(self, code):
        self.gone = True
        if self.console is not None and self.member is not None:
            console, self.console = self.console, None
            await console.remove(self.member)

    async def receive(self, text_data=None, bytes_data=None):
        if self.console is None or self.member is None:
            return
        if bytes_data is not None:
            if len(bytes_data) > INPUT_FRAME_MAX:
                await self._refuse(f"input of {len(bytes_data)} bytes refused: at most {INPUT_FRAME_MAX} at a time")
            elif not await self.console.input(self.member, bytes_data):
                writer = self.console.writer.label if self.console.writer else "nobody"
                await self._refuse(f"{writer} is typing; you are watching")
            return
        if text_data is None or len(text_data) > CONTROL_FRAME_MAX:
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "take":
            await self.console.take(self.member)

    async def _refuse(self, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "refused", "message": message}))

    # -- what the hub calls ---------------------------------------------------------------------------------

    async def send_output(self, data: bytes) -> None:
        await self.send(bytes_data=data)

    async def send_state(self, state: dict) -> None:
        await self.send(text_data=json.dumps(state))

    async def console_ended(self, message: str) -> None:
        self.console = None
        await self.send(text_data=json.dumps({"type": "ended", "message": message}))
        await self.close(code=CLOSE_ENDED)
