"""Interactive, recorded shells on machines, through the site's jump hosts, with a per-session certificate.

``open_session`` (sync) checks the site's policy and creates the session's row; a ``Terminal`` (async, in the
process that serves the person: the websocket consumer, or ``manage.py ssh``) connects, relays bytes both
ways, records them (asciicast v2), and ends the session on exit, close, idle timeout or the certificate's end.
``end_session`` (sync, any process) is an admin ending someone's session.

Idle means neither input nor output for the policy's idle_timeout_s: a technician watching a long build or
``tail -f`` is using the session, and the maximum length (the certificate's end) bounds even a session kept
busy by output alone.

The process holding a Terminal writes the row's counters, transcript and heartbeat every
SSH_SESSION_FLUSH_S; an open session whose heartbeat stopped has lost its process (killed, host down) and is
ended as ``shutdown`` by the next open_session or the periodic sweep (access/retention.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable
from datetime import timedelta

import asyncssh
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from accounts.roles import Role, role_of
from audit.service import Actor, record
from core import asciicast
from core.asciicast import CastRecorder
from inventory.models import Machine

from . import ca, errors, service, transport
from .ansi import Transcript
from .models import SessionEnd, SessionPolicy, ShellSession, SiteCA

log = logging.getLogger(__name__)

__all__ = ["SessionRefused", "Terminal", "end_session", "group_name", "open_session", "settle_stale"]

_CHUNK = 65536
MAX_COLS, MAX_ROWS = 1000, 1000


class SessionRefused(Exception):
    """The request cannot be served as made (no reason given, nothing configured); ``message`` is for people."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def group_name(session_id: int) -> str:
    """The channel-layer group of a session: its output, its end, and admins' requests to end it."""
    return f"ssh-session-{session_id}"


def stale_after() -> timedelta:
    return timedelta(seconds=3 * settings.SSH_SESSION_FLUSH_S)


# -- opening (sync) -----------------------------------------------------------------------------------------------


def _role_name(role: Role) -> str:
    return "admin" if role >= Role.ADMIN else "technician"


def open_session(user, machine: Machine, *, reason: str, client: str, principal: str = "") -> ShellSession:
    """Check the site's policy and create the session's row (audited ``ssh.session.open``). ``principal`` picks
    one of the logins the user's role may use; blank takes the policy's default.

    Raises PermissionDenied (a role or login this user may not use) or SessionRefused (a missing reason, a
    machine or site lacking what a connection needs)."""
    role = role_of(user)
    name = user.get_username() if user is not None and user.is_authenticated else "anonymous"
    if role < Role.TECHNICIAN:
        raise PermissionDenied(f"{name} may not open SSH sessions: it takes the technician role or above.")
    reason = (reason or "").strip()
    if "\x00" in reason or len(reason) > 500:
        raise SessionRefused("The reason must be at most 500 characters of text.")
    site = machine.rack.site if machine.rack_id else None
    if site is None:
        raise SessionRefused(f"{machine.hostname} is not in a rack, so it has no site and no jump host.")
    policy = SessionPolicy.for_site(site)
    if policy.min_role == "admin" and role < Role.ADMIN:
        raise PermissionDenied(f"On site {site.slug}, only admins may open SSH sessions.")
    if machine.protected and policy.reason_required_protected and not reason:
        raise SessionRefused(f"{machine.hostname} is protected: give a reason for the session.")
    allowed = policy.principals_for(_role_name(role))
    if not allowed:
        raise SessionRefused(f"Site {site.slug}'s session policy names no login for the {_role_name(role)} role.")
    principal = principal or allowed[0]
    if principal not in allowed:
        raise PermissionDenied(
            f"{name} may not log in as {principal!r} on site {site.slug} (allowed: {', '.join(allowed)})."
        )
    try:
        hops, target = service.session_route(machine)
    except errors.AccessError as exc:
        raise SessionRefused(exc.message) from None
    SiteCA.for_site(site)
    settle_stale()
    now = timezone.now()
    with transaction.atomic():
        session = ShellSession.objects.create(
            machine=machine,
            hostname=machine.hostname,
            site=site,
            opened_by=user,
            opened_by_label=name,
            client=client,
            principal=principal,
            via=" → ".join(hop.label for hop in hops),
            reason=reason,
            cert_key_id=name,
            cert_valid_before=now + timedelta(seconds=policy.max_length_s),
            started_at=now,
            heartbeat_at=now,
        )
        session.cert_serial = session.pk  # unique per CA, and names the session in the machine's sshd log
        session.save(update_fields=["cert_serial"])
        record(
            Actor.for_user(user),
            "ssh.session.open",
            machine,
            {
                "session": session.pk,
                "client": client,
                "principal": principal,
                "reason": reason,
                "via": session.via,
                "target": target.label,
                "cert_serial": session.cert_serial,
                "valid_before": session.cert_valid_before.isoformat(),
            },
        )
    return session


def settle_stale() -> int:
    """End, as ``shutdown``, the open sessions whose process stopped beating. Returns how many."""
    cutoff = timezone.now() - stale_after()
    stale = ShellSession.objects.filter(ended_at__isnull=True, heartbeat_at__lt=cutoff)
    ended = 0
    for session_id in stale.values_list("pk", flat=True):
        ended += _finish(session_id, SessionEnd.SHUTDOWN, "the process holding the session stopped", None, {})
    return ended


def end_session(session_id: int, by_user) -> ShellSession:
    """An admin ends a session, whichever process holds it (audited ``ssh.session.end``). A session whose
    process is gone (heartbeat stopped) is marked ended here. Raises PermissionDenied for non-admins."""
    if role_of(by_user) < Role.ADMIN:
        raise PermissionDenied("Only admins may end someone's SSH session.")
    label = by_user.get_username()
    with transaction.atomic():
        session = ShellSession.objects.select_for_update().get(pk=session_id)
        if not session.active:
            return session
        record(
            Actor.for_user(by_user),
            "ssh.session.end",
            session.machine,
            {"session": session.pk, "opened_by": session.opened_by_label},
            object_label=session.hostname,
        )
        stale = session.heartbeat_at is None or session.heartbeat_at < timezone.now() - stale_after()
        message = {"type": "session.end", "by": by_user.pk, "by_label": label}
        transaction.on_commit(lambda: async_to_sync(get_channel_layer().group_send)(group_name(session_id), message))
    if stale:
        _finish(session_id, SessionEnd.ENDED, f"ended by {label}", by_user.pk, {})
    return ShellSession.objects.get(pk=session_id)


# -- the database side of a running Terminal (run in a thread) --------------------------------------------------


def _load(session_id: int):
    session = ShellSession.objects.select_related("machine__rack__site", "opened_by", "site").get(pk=session_id)
    if not session.active:
        raise errors.AccessNotConfigured(f"Session {session_id} has ended ({session.get_end_reason_display()}).")
    if session.machine is None or session.site is None:
        raise errors.AccessNotConfigured(f"{session.hostname} no longer exists.")
    policy = SessionPolicy.for_site(session.site)
    hops, target = service.session_route(session.machine)
    principals = policy.principals_for(_role_name(role_of(session.opened_by)))
    if session.principal not in principals:
        raise errors.AccessNotConfigured(f"The site's policy no longer lets {session.opened_by_label} log in as "
                                         f"{session.principal!r}.")  # fmt: skip
    creds = ca.sign_session(
        SiteCA.for_site(session.site),
        key_id=session.cert_key_id,
        principals=principals,
        serial=session.cert_serial or session.pk,
        valid_before=int(session.cert_valid_before.timestamp()),
    )
    target = transport.Endpoint(
        target.label,
        target.address,
        target.port,
        session.principal,
        creds.private_key,
        target.pinned_host_keys,
        certificate=creds.certificate,
    )
    return session, policy, hops, target


def _flush(session_id: int, counts: dict) -> None:
    ShellSession.objects.filter(pk=session_id, ended_at__isnull=True).update(heartbeat_at=timezone.now(), **counts)


def _finish(session_id: int, reason: str, message: str, ended_by_id: int | None, counts: dict) -> int:
    """Mark the session ended (once) and audit ``ssh.session.close``. Returns 1 when this call ended it."""
    with transaction.atomic():
        session = ShellSession.objects.select_for_update().filter(pk=session_id, ended_at__isnull=True).first()
        if session is None:
            return 0
        session.ended_at = timezone.now()
        session.end_reason = reason
        session.end_message = message[:500]
        session.ended_by_id = ended_by_id
        for name, value in counts.items():
            setattr(session, name, value)
        session.save()
        if reason == SessionEnd.ENDED and session.ended_by is not None:
            actor = Actor.for_user(session.ended_by)
        elif reason in (SessionEnd.CLOSED, SessionEnd.EXITED, SessionEnd.FAILED) and session.opened_by is not None:
            actor = Actor.for_user(session.opened_by)
        else:
            actor = Actor.system("ssh session")
        details = {
            "session": session.pk,
            "reason": reason,
            "bytes_in": session.bytes_in,
            "bytes_out": session.bytes_out,
            "duration_s": round((session.ended_at - session.started_at).total_seconds(), 1),
            "truncated": session.truncated,
        }
        if message:
            details["message"] = message[:500]
        record(actor, "ssh.session.close", session.machine, details, object_label=session.hostname)
    return 1


def _ended(session_id: int) -> ShellSession:
    return ShellSession.objects.get(pk=session_id)


# -- the Terminal (async) ----------------------------------------------------------------------------------------

_live: dict[int, Terminal] = {}


async def _call(callback, *args) -> None:
    """A callback of the holder (plain or async); one that fails must not take the session down."""
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("ssh session: a callback failed")


class Terminal:
    """One running session. ``on_output(data)`` gets every chunk the shell writes; ``on_end(session)`` the
    ended row. Either may be a coroutine function."""

    def __init__(self, session_id: int, *, on_output: Callable, on_end: Callable):
        self.session_id = session_id
        self.on_output = on_output
        self.on_end = on_end
        self.session: ShellSession | None = None
        self.record_input = True
        self.idle_timeout_s = 900.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.recorder: CastRecorder | None = None
        self.transcript = Transcript(settings.SSH_TRANSCRIPT_MAX_CHARS)
        self._conns: list[asyncssh.SSHClientConnection] = []
        self._process: asyncssh.SSHClientProcess | None = None
        self._tasks: list[asyncio.Task] = []
        self._last_activity = time.monotonic()
        self._closing = False
        self._ended = asyncio.Event()

    # -- starting

    async def start(self, cols: int = 80, rows: int = 24) -> None:
        """Connect and open the shell. On failure the session is ended as ``failed`` and AccessError raised."""
        cols, rows = _size(cols, rows)
        try:
            session, policy, hops, target = await database_sync_to_async(_load)(self.session_id)
        except errors.AccessError as exc:
            await self._fail(exc)
            raise
        self.session = session
        self.record_input = policy.record_input
        self.idle_timeout_s = float(policy.idle_timeout_s)
        per_hop = service.connect_timeout_s()
        try:
            self._conns = await transport.open_chain(hops, connect_timeout=per_hop)
            connected = await transport.connect_target(target, tunnel=self._conns[-1], connect_timeout=per_hop)
            self._conns.append(connected.conn)
            self._process = await connected.conn.create_process(
                term_type="xterm-256color", term_size=(cols, rows), encoding=None, request_pty="force"
            )
        except errors.AccessError as exc:
            await self._fail(exc)
            raise
        except (OSError, asyncssh.Error) as exc:
            failure = errors.TargetUnreachable(f"{target.label} refused the shell: {_why(exc)}", host=target.label)
            await self._fail(failure)
            raise failure from None
        self.recorder = CastRecorder(
            session.cast_path,
            title=f"{session.principal}@{session.hostname}",
            max_bytes=settings.SSH_RECORDING_MAX_BYTES,
            width=cols,
            height=rows,
        )
        _live[self.session_id] = self
        self._last_activity = time.monotonic()
        remaining = session.cert_valid_before.timestamp() - time.time()
        self._tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._watch_idle()),
            asyncio.create_task(self._flush_every()),
            asyncio.create_task(self._expire_in(remaining)),
        ]

    async def _fail(self, exc: errors.AccessError) -> None:
        await transport.close_all(self._conns)
        self._conns = []
        await database_sync_to_async(_finish)(self.session_id, SessionEnd.FAILED, exc.message, None, {})
        self._ended.set()

    # -- running

    async def write(self, data: bytes) -> None:
        if self._closing or self._process is None or not data:
            return
        self.bytes_in += len(data)
        self._last_activity = time.monotonic()
        if self.record_input:
            self.recorder.input(data)
        try:
            self._process.stdin.write(data)
        except (OSError, asyncssh.Error):
            pass  # the reader sees the channel close and ends the session

    async def resize(self, cols: int, rows: int) -> None:
        if self._closing or self._process is None:
            return
        cols, rows = _size(cols, rows)
        with contextlib.suppress(OSError, asyncssh.Error):
            self._process.change_terminal_size(cols, rows)
        self.recorder.resize(cols, rows)

    async def _read(self) -> None:
        stdout = self._process.stdout
        message = ""
        try:
            while chunk := await stdout.read(_CHUNK):
                self.bytes_out += len(chunk)
                self._last_activity = time.monotonic()
                self.recorder.output(chunk)
                self.transcript.feed(chunk)
                await _call(self.on_output, chunk)
            status = self._process.exit_status
            message = f"exit status {status}" if status is not None else ""
        except (OSError, asyncssh.Error) as exc:
            message = f"the connection dropped: {_why(exc)}"
        asyncio.ensure_future(self.close(SessionEnd.EXITED, message))

    async def _watch_idle(self) -> None:
        while True:
            left = self._last_activity + self.idle_timeout_s - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(left)
        asyncio.ensure_future(self.close(SessionEnd.IDLE, f"no input or output for {self.idle_timeout_s:g} s"))

    async def _expire_in(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
        asyncio.ensure_future(self.close(SessionEnd.EXPIRED, "the session reached its maximum length"))

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(settings.SSH_SESSION_FLUSH_S)
            try:
                await database_sync_to_async(_flush)(self.session_id, self._counts())
            except Exception:  # the database coming back later is fine: the next beat writes it all
                log.warning("ssh session %s: could not write its progress", self.session_id, exc_info=True)

    def _counts(self) -> dict:
        return {
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "transcript": self.transcript.text(),
            **asciicast.counts(self.recorder),
        }

    # -- ending

    async def close(self, reason: str = SessionEnd.CLOSED, message: str = "", ended_by=None) -> None:
        """End the session (once): the shell and connections closed, the recording and row settled, audited."""
        if self._closing:
            await self._ended.wait()
            return
        self._closing = True
        _live.pop(self.session_id, None)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._process is not None:
            self._process.close()
        await transport.close_all(self._conns)
        if self.recorder is not None:
            self.recorder.close()
        ended_by_id = getattr(ended_by, "pk", ended_by)
        await database_sync_to_async(_finish)(self.session_id, reason, message, ended_by_id, self._counts())
        self.session = await database_sync_to_async(_ended)(self.session_id)
        self._ended.set()
        await _call(self.on_end, self.session)

    async def wait(self) -> ShellSession | None:
        await self._ended.wait()
        return self.session

    @property
    def ended(self) -> bool:
        return self._ended.is_set()


async def shutdown_all(message: str = "the web process stopped") -> None:
    """End every session this process holds, as ``shutdown`` (the web process and manage.py ssh on a signal)."""
    await asyncio.gather(*(t.close(SessionEnd.SHUTDOWN, message) for t in list(_live.values())))


def _size(cols, rows) -> tuple[int, int]:
    try:
        return max(1, min(int(cols), MAX_COLS)), max(1, min(int(rows), MAX_ROWS))
    except (TypeError, ValueError):
        return 80, 24


def _why(exc: Exception) -> str:
    return getattr(exc, "reason", "") or str(exc) or type(exc).__name__
