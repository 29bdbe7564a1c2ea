"""Websockets of the SSH terminal (static/js/ssh-terminal.js): a technician's shell on a deployed machine, and
an admin's read-only view of one that is open.

``ws/machines/<hostname>/terminal/`` opens a session (technicians; the site's policy decides, through
access.terminal.open_session). The session starts when the browser says its size: ``?cols=&rows=&reason=`` on
the URL, or a first text frame ``{"type": "open", "cols", "rows", "reason"}`` (and ``principal``, one of the
logins the site's policy allows; blank for its default). ``session`` instead of a reason attaches to the
session a script opened through the API (access/rest.py): once, by the person who opened it. Then:

* server to browser: binary frames are the shell's output; text frames are JSON: ``{"type": "session", "id",
  "replay"}`` once the row exists, ``{"type": "ready"}`` when the shell runs, ``{"type": "error", "message"}``
  when it cannot be opened (refused, or the jump host or machine did not answer), ``{"type": "refused",
  "message"}`` for a frame it will not take, ``{"type": "ended", "reason", "message"}`` when it ends.
* browser to server: binary frames are keystrokes; text ``{"type": "resize", "cols", "rows"}`` and
  ``{"type": "close"}``.

The consumer holding the Terminal joins group ``ssh-session-<id>`` and broadcasts to it (``session.output``,
``session.ended``), so ``ws/ssh-sessions/<id>/watch/`` (admins) follows from any daphne process; an admin's
``session.end`` (access.terminal.end_session) reaches the holder through the same group.

A script authenticates the handshake with ``Authorization: Token <key>`` (accounts/ws_auth.py), like the API.
"""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import PermissionDenied

from accounts.roles import Role, has_role
from audit.context import source_ip
from audit.service import Actor, record
from core import queues
from inventory.models import Machine

from . import terminal
from .errors import AccessError
from .models import ShellSession
from .shell_sessions import screen_so_far

log = logging.getLogger(__name__)

CLOSE_ENDED = 4000
CLOSE_BAD_REQUEST = 4400
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_REFUSED = 4409
# A keystroke frame (or a slice of a paste) larger than this is refused, not sent: the browser sends 1 KiB
# slices, and a shell reading a paste faster than it can echo it gains nothing from bigger ones.
INPUT_FRAME_MAX = 4096
CONTROL_FRAME_MAX = 512
REASON_MAX = 500
_LARGEST = f"{terminal.MAX_COLS}×{terminal.MAX_ROWS}"  # the runtime's bound on a terminal's size
# How long the claim on an API-opened session lasts: longer than any session (the certificate's end).
ATTACH_CLAIM_S = 7 * 24 * 3600


def _size(cols, rows) -> tuple[int, int] | None:
    """(cols, rows) when both are whole numbers in range, else None."""
    try:
        cols, rows = int(cols), int(rows)
    except (TypeError, ValueError):
        return None
    if isinstance(cols, bool) or not (1 <= cols <= terminal.MAX_COLS and 1 <= rows <= terminal.MAX_ROWS):
        return None
    return cols, rows


def _control(text_data: str | None) -> dict | None:
    if text_data is None or len(text_data) > CONTROL_FRAME_MAX:
        return None
    try:
        message = json.loads(text_data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


class _SessionSocket(AsyncWebsocketConsumer):
    """What both sockets share: who is asking, in which group, and the frames they send."""

    group: str | None = None

    async def _role(self, role: Role) -> bool:
        user = self.scope.get("user")
        return user is not None and await database_sync_to_async(has_role)(user, role)

    async def _join(self, session_id: int) -> None:
        self.group = terminal.group_name(session_id)
        await self.channel_layer.group_add(self.group, self.channel_name)

    async def _leave(self) -> None:
        if self.group is not None:
            group, self.group = self.group, None
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _json(self, **message) -> None:
        await self.send(text_data=json.dumps(message))

    async def _fail(self, message: str, code: int) -> None:
        await self._json(type="error", message=message)
        await self.close(code=code)


class TerminalConsumer(_SessionSocket):
    term: terminal.Terminal | None = None
    query: dict = {}  # the handshake's ?cols=&rows=&reason=&session=, set in connect
    session_id: int | None = None
    opening = False
    gone = False  # the browser left (perhaps while the shell was still being opened)

    async def connect(self):
        if not await self._role(Role.TECHNICIAN):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        hostname = self.scope["url_route"]["kwargs"]["hostname"]
        self.machine = await database_sync_to_async(Machine.objects.filter(hostname=hostname).first)()
        if self.machine is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.accept()
        client = self.scope.get("client")
        source_ip.set(client[0] if client else None)
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.query = {k: v[-1] for k, v in query.items() if k in ("cols", "rows", "reason", "principal", "session")}
        if "cols" in self.query or "rows" in self.query:
            await self._open({})

    async def _open(self, frame: dict) -> None:
        if self.opening:
            return
        self.opening = True
        request = {**self.query, **frame}
        size = _size(request.get("cols"), request.get("rows"))
        if size is None:
            await self._fail(f"cols and rows must be whole numbers, at most {_LARGEST}", CLOSE_BAD_REQUEST)
            return
        reason = request.get("reason", "")
        if not isinstance(reason, str) or len(reason) > REASON_MAX or "\x00" in reason:
            await self._fail(f"reason: at most {REASON_MAX} characters of text", CLOSE_BAD_REQUEST)
            return
        principal = request.get("principal", "")
        if not isinstance(principal, str) or len(principal) > 32:
            await self._fail("principal: a login name of at most 32 characters", CLOSE_BAD_REQUEST)
            return
        client = "api" if self.scope.get("auth_token") else "browser"
        try:
            if request.get("session"):
                session = await database_sync_to_async(_attach)(request["session"], self.scope["user"], self.machine)
            else:
                session = await database_sync_to_async(terminal.open_session)(
                    self.scope["user"], self.machine, reason=reason.strip(), client=client, principal=principal
                )
        except PermissionDenied as exc:
            await self._fail(str(exc) or "You may not open a session on this machine.", CLOSE_FORBIDDEN)
            return
        except terminal.SessionRefused as exc:
            await self._fail(str(exc), CLOSE_REFUSED)
            return
        self.session_id = session.pk
        await self._join(session.pk)
        await self._json(type="session", id=session.pk, replay=session.get_absolute_url())
        self.term = terminal.Terminal(session.pk, on_output=self._output, on_end=self._ended)
        try:
            await self.term.start(*size)
        except AccessError as exc:
            self.term = None
            await self._leave()
            await self._fail(exc.message, CLOSE_REFUSED)
            return
        if self.gone:  # left while the shell came up: do not keep a shell nobody sees
            await self.term.close("closed", "the browser left before the shell opened")
            return
        await self._json(type="ready")

    async def disconnect(self, code):
        self.gone = True
        if self.term is not None:
            term, self.term = self.term, None
            await term.close("closed", "the browser closed the terminal")
        await self._leave()

    async def receive(self, text_data=None, bytes_data=None):
        if bytes_data is not None:
            if self.term is None:
                return
            if len(bytes_data) > INPUT_FRAME_MAX:
                await self._json(
                    type="refused", message=f"input of {len(bytes_data)} bytes refused: at most {INPUT_FRAME_MAX}"
                )
                return
            await self.term.write(bytes_data)
            return
        message = _control(text_data)
        if message is None:
            await self._json(type="refused", message=f"a control frame is a JSON object of at most {CONTROL_FRAME_MAX}")
            return
        kind = message.get("type")
        if kind == "open" and self.session_id is None:
            await self._open(message)
        elif kind == "resize" and self.term is not None:
            size = _size(message.get("cols"), message.get("rows"))
            if size is None:
                await self._json(type="refused", message=f"resize: at most {_LARGEST}")
            else:
                await self.term.resize(*size)
        elif kind == "close" and self.term is not None:
            await self.term.close("closed")

    # -- what the Terminal calls --------------------------------------------------------------------------------

    async def _output(self, data: bytes) -> None:
        await self.send(bytes_data=data)
        if self.group is not None:
            await self.channel_layer.group_send(
                self.group, {"type": "session.output", "data": base64.b64encode(data).decode()}
            )

    async def _ended(self, session) -> None:
        self.term = None
        ended = {"reason": session.end_reason, "message": session.end_message or session.get_end_reason_display()}
        if self.group is not None:
            await self.channel_layer.group_send(self.group, {"type": "session.ended", **ended})
            await self._leave()
        if not self.gone:
            await self._json(type="ended", **ended)
            await self.close(code=CLOSE_ENDED)

    # -- what the group brings ----------------------------------------------------------------------------------

    async def session_output(self, event):
        """Our own output, back from the group: the browser already has it."""

    async def session_ended(self, event):
        """Our own end, back from the group: _ended told the browser."""

    async def session_end(self, event):
        """An admin ends this session (access.terminal.end_session, from any process)."""
        if self.term is not None:
            label = event.get("by_label") or "an admin"
            await self.term.close("ended", f"ended by {label}", ended_by=event.get("by"))


class WatchConsumer(_SessionSocket):
    """An admin follows an open session read-only: the screen so far (from its recording), then live output."""

    async def connect(self):
        if not await self._role(Role.ADMIN):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        session = await database_sync_to_async(ShellSession.objects.filter(pk=session_id).first)()
        if session is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.accept()
        if not session.active:
            await self._json(type="ended", reason=session.end_reason, message=session.get_end_reason_display())
            await self.close(code=CLOSE_ENDED)
            return
        await self._join(session.pk)  # before reading the recording: a chunk may come twice, none goes missing
        client = self.scope.get("client")
        source_ip.set(client[0] if client else None)
        await database_sync_to_async(_audit_watch)(session, self.scope["user"])
        await self._json(type="session", id=session.pk, replay=session.get_absolute_url(), watching=True)
        screen = await database_sync_to_async(screen_so_far)(session)
        if screen:
            await self.send(bytes_data=screen)

    async def disconnect(self, code):
        await self._leave()

    async def receive(self, text_data=None, bytes_data=None):
        await self._json(type="refused", message="You are watching: this view is read-only.")

    async def session_output(self, event):
        await self.send(bytes_data=base64.b64decode(event["data"]))

    async def session_ended(self, event):
        await self._json(type="ended", reason=event.get("reason", ""), message=event.get("message", ""))
        await self._leave()
        await self.close(code=CLOSE_ENDED)

    async def session_end(self, event):
        """Meant for the process holding the session."""


def _attach(session_id, user, machine: Machine) -> ShellSession:
    """The session a script opened through the API (access/rest.py), for its first and only connection."""
    pk = int(session_id) if str(session_id).isdigit() else 0
    session = ShellSession.objects.filter(pk=pk, machine=machine).first()
    if session is None or session.opened_by_id != user.pk:
        raise PermissionDenied(f"Session {session_id} on {machine.hostname} is not one you opened.")
    if not session.active:
        raise terminal.SessionRefused(f"Session {pk} has ended ({session.get_end_reason_display()}).")
    # One connection per session, across every web process: the first to claim it holds it.
    if not queues.connection().set(f"provisioner:ssh-session-attached:{pk}", 1, nx=True, ex=ATTACH_CLAIM_S):
        raise terminal.SessionRefused(f"Session {pk} is already connected.")
    return session


def _audit_watch(session: ShellSession, user) -> None:
    record(
        Actor.for_user(user),
        "ssh.session.watch",
        session.machine,
        {"session": session.pk, "opened_by": session.opened_by_label},
        object_label=session.hostname,
    )
