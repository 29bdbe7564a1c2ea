"""The console hub: one serial console per machine in the web process, shared by every browser watching it.

A BMC offers one SOL session at a time, so the browsers on one machine's console share it: the first
technician to arrive has the keyboard (the *writer*), the others watch read-only and are told who is typing.
When the writer leaves, the keyboard goes to the technician who has watched longest; anyone watching can also
take it explicitly. Everything is recorded (asciicast v2) and every open, close, take-over, hand-over and end is
audited against the machine.

The hub lives in the daphne process that serves the websockets (one per deployment: deploy/systemd). Its state
is in memory, by design: a console is a live connection to a BMC, not a row. When the last browser leaves, SOL
stays active for CONSOLE_IDLE_GRACE_S, then is deactivated. When daphne stops or dies, each SOL helper sees its
stdin close and deactivates SOL itself; the sessions it left open are marked ended ("web process stopped") when
the next web process opens its first console. All of this runs on daphne's event loop; the ORM calls go through
database_sync_to_async.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.service import Actor, record
from core import asciicast
from core.asciicast import CastRecorder
from inventory import power
from inventory.models import BMC, Machine
from provisioner.bmc import BmcError, Capability, registry
from provisioner.bmc.serial import SerialConsole

from .models import ConsoleSession, EndReason

log = logging.getLogger(__name__)


class ConsoleRefused(Exception):
    """The console cannot be opened for this machine (no BMC, or its driver has no console)."""


class Viewer(Protocol):
    """What the hub needs of a browser's socket (serialconsole/consumers.py)."""

    async def send_output(self, data: bytes) -> None: ...

    async def send_state(self, state: dict) -> None: ...

    async def console_ended(self, message: str) -> None: ...


@dataclass(eq=False)
class Member:
    viewer: Viewer
    user: object
    label: str
    actor: Actor


@dataclass(eq=False)
class ConsoleHub:
    machine_id: int
    hostname: str = ""
    session_id: int | None = None
    console: SerialConsole | None = None
    recorder: CastRecorder | None = None
    members: list[Member] = field(default_factory=list)
    writer: Member | None = None
    backlog: deque = field(default_factory=deque)
    backlog_size: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    starting: asyncio.Future | None = None
    reader: asyncio.Task | None = None
    idle_timer: asyncio.TimerHandle | None = None
    ending: bool = False
    #: Set once the session is settled (console closed, recording closed, row and audit written).
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    # -- opening ------------------------------------------------------------------------------------------------

    async def start(self, actor: Actor) -> None:
        console, session = await database_sync_to_async(_open)(self.machine_id, actor)
        self.hostname, self.session_id, self.console = session.hostname, session.pk, console
        try:
            await console.start()
        except BmcError as exc:
            await database_sync_to_async(_end)(session.pk, actor, EndReason.FAILED, str(exc), self._counts())
            raise
        self.recorder = CastRecorder(
            session.cast_path,
            title=f"{session.hostname} serial console",
            max_bytes=settings.CONSOLE_RECORDING_MAX_BYTES,
        )
        self.reader = asyncio.create_task(self._read_forever())
        # Armed until the first browser is added: one that went away while SOL came up must not leave it held.
        self._arm_idle_timer()

    def _arm_idle_timer(self) -> None:
        if self.ending:
            return
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.idle_timer = asyncio.get_running_loop().call_later(
            settings.CONSOLE_IDLE_GRACE_S, lambda: asyncio.ensure_future(self.end(EndReason.IDLE, ""))
        )

    def _counts(self) -> dict:
        return {"bytes_out": self.bytes_out, "bytes_in": self.bytes_in, **asciicast.counts(self.recorder)}

    # -- members ------------------------------------------------------------------------------------------------

    async def add(self, member: Member) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.members.append(member)
        role = "watcher"
        if self.writer is None:
            self.writer, role = member, "writer"
            self._mark(f"{member.label} has the keyboard")
        await self._audit(member.actor, "machine.console.open", {"as": role})
        for chunk in list(self.backlog):
            await _deliver(member, member.viewer.send_output(chunk))
        await self._publish()

    async def remove(self, member: Member) -> None:
        if member not in self.members:
            return
        self.members.remove(member)
        await self._audit(member.actor, "machine.console.close", {})
        if self.writer is member:
            self.writer = None
            if self.members:
                heir = self.members[0]  # the one who has watched longest
                self.writer = heir
                self._mark(f"{heir.label} has the keyboard ({member.label} left)")
                await self._audit(heir.actor, "machine.console.handover", {"from": member.label})
        if not self.members:
            self._arm_idle_timer()
        await self._publish()

    async def take(self, member: Member) -> None:
        """``member`` takes the keyboard from whoever has it (audited, and marked in the recording)."""
        if member not in self.members or self.writer is member:
            return
        previous = self.writer
        self.writer = member
        before = previous.label if previous else ""
        self._mark(f"{member.label} took the keyboard" + (f" from {before}" if before else ""))
        await self._audit(member.actor, "machine.console.takeover", {"from": before})
        await self._publish()

    async def input(self, member: Member, data: bytes) -> bool:
        """Keystrokes from ``member``: sent to the serial port when it has the keyboard, else refused (False)."""
        if member is not self.writer or self.console is None or self.ending:
            return False
        self.bytes_in += len(data)
        if self.recorder is not None:
            self.recorder.input(data)
        await self.console.write(data)
        return True

    async def _publish(self) -> None:
        writer = self.writer.label if self.writer else ""
        watching = [m.label for m in self.members]
        for member in list(self.members):
            you = "writer" if member is self.writer else "watcher"
            state = {"type": "state", "session": self.session_id, "writer": writer, "you": you, "viewers": watching}
            await _deliver(member, member.viewer.send_state(state))

    # -- the serial port ----------------------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        console = self.console
        while True:
            try:
                data = await console.read()
            except Exception:  # a broken console ends the session, it must not take the hub down
                log.exception("serial console of machine %s failed", self.hostname)
                data = b""
            if not data:
                break
            self.bytes_out += len(data)
            self.recorder.output(data)
            self.backlog.append(data)
            self.backlog_size += len(data)
            while self.backlog_size > settings.CONSOLE_BACKLOG_BYTES and len(self.backlog) > 1:
                self.backlog_size -= len(self.backlog.popleft())
            for member in list(self.members):
                await _deliver(member, member.viewer.send_output(data))
        if not self.ending:
            asyncio.ensure_future(self.end(EndReason.ENDED, console.ended or "the console ended"))

    # -- ending -------------------------------------------------------------------------------------------------

    async def end(self, reason: EndReason, message: str) -> None:
        if self.ending:
            return
        if reason == EndReason.IDLE and self.members:
            return  # someone came back during the grace period
        self.ending = True
        if _hubs.get(self.machine_id) is self:
            del _hubs[self.machine_id]
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()
        with contextlib.suppress(Exception):
            await self.console.close()
        if self.recorder is not None:
            self.recorder.close()
        actor = self.members[0].actor if self.members else Actor.system("console")
        await database_sync_to_async(_end)(self.session_id, actor, reason, message, self._counts())
        for member in list(self.members):
            await _deliver(member, member.viewer.console_ended(message or EndReason(reason).label))
        self.members.clear()
        self.ended.set()

    # -- helpers ------------------------------------------------------------------------------------------------

    def _mark(self, text: str) -> None:
        if self.recorder is not None:
            self.recorder.marker(text)

    async def _audit(self, actor: Actor, action: str, details: dict) -> None:
        await database_sync_to_async(_audit)(self.machine_id, actor, action, {"session": self.session_id, **details})


async def _deliver(member: Member, sending) -> None:
    """One browser's send; a socket that broke must not keep the others from theirs (it leaves on its own)."""
    try:
        await sending
    except Exception:
        log.warning("console: could not send to %s's browser", member.label, exc_info=True)


_hubs: dict[int, ConsoleHub] = {}
# Sessions left open by a web process that died are settled once, before this process opens its first.
_settled = False


async def join(machine_id: int, viewer: Viewer, user, actor: Actor) -> tuple[ConsoleHub, Member]:
    """Join the machine's console, opening it when nobody has it open; raises ConsoleRefused or a BmcError."""
    global _settled
    if not _settled:
        _settled = True
        await database_sync_to_async(settle_orphans)()
    hub = _hubs.get(machine_id)
    if hub is None:
        hub = _hubs[machine_id] = ConsoleHub(machine_id)
        hub.starting = asyncio.ensure_future(hub.start(actor))
    try:
        await asyncio.shield(hub.starting)
    except BaseException:
        if _hubs.get(machine_id) is hub and hub.starting.done():
            del _hubs[machine_id]
        raise
    member = Member(viewer=viewer, user=user, label=actor.label, actor=actor)
    await hub.add(member)
    return hub, member


def running(machine_id: int) -> ConsoleHub | None:
    return _hubs.get(machine_id)


# -- database side (run in a thread) ------------------------------------------------------------------------


def _open(machine_id: int, actor: Actor) -> tuple[SerialConsole, ConsoleSession]:
    machine = Machine.objects.get(pk=machine_id)
    try:
        bmc = machine.bmc
    except BMC.DoesNotExist:
        raise ConsoleRefused(f"{machine.hostname} has no BMC configured, so it has no serial console.") from None
    try:
        registry.require(bmc.driver, Capability.CONSOLE, machine.hostname)
    except BmcError as exc:
        raise ConsoleRefused(str(exc)) from None
    console = power.driver_for(machine).console(machine.hostname)
    with transaction.atomic():
        session = ConsoleSession.objects.create(
            machine=machine,
            hostname=machine.hostname,
            driver=bmc.driver,
            opened_by=actor.user,
            opened_by_label=actor.label,
        )
        record(actor, "machine.console.start", machine, {"session": session.pk, "driver": bmc.driver})
    return console, session


def _end(session_id: int, actor: Actor, reason: str, message: str, counts: dict) -> None:
    with transaction.atomic():
        session = ConsoleSession.objects.select_for_update().get(pk=session_id)
        if session.ended_at is not None:
            return
        session.ended_at = timezone.now()
        session.end_reason = reason
        session.end_message = message[:500]
        for name, value in counts.items():
            setattr(session, name, value)
        session.save()
        details = {"session": session.pk, "reason": reason, "bytes_out": session.bytes_out}
        if message:
            details["message"] = message[:500]
        record(actor, "machine.console.end", session.machine, details, object_label=session.hostname)


def _audit(machine_id: int, actor: Actor, action: str, details: dict) -> None:
    machine = Machine.objects.filter(pk=machine_id).first()
    record(actor, action, machine, details)


def settle_orphans() -> int:
    """Sessions a dead web process left open are over: mark them ended (the web process calls this at start)."""
    return ConsoleSession.objects.filter(ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=EndReason.SHUTDOWN, end_message="the web process stopped"
    )
