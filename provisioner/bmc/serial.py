"""A machine's serial console through its BMC, as an asyncio stream of bytes (Capability.CONSOLE).

A driver that declares the console capability has ``console()`` returning a :class:`SerialConsole`. The web
process's console hub (serialconsole/hub.py) opens one per machine and shares it among the browsers watching.

* IPMI: Serial-over-LAN through pyghmi, in a child process of its own (sol_child.py says why).
* Fake: a little simulated shell (a login prompt, echo, a few commands), so the demo shows the feature.
* Redfish: sushy-tools offers no serial console and Redfish's own (``SerialConsole`` over SSH or a vendor
  websocket) differs from BMC to BMC, so the driver does not declare it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Protocol, runtime_checkable

from .base import BmcTarget
from .errors import BmcAuthError, BmcBusy, BmcError, BmcTimeout, BmcUnreachable, BmcUnsupported

#: Seconds the child gets to deactivate SOL and log out once told to stop, before it is killed.
CLOSE_GRACE_S = 5.0

_ERRORS = {cls.reason: cls for cls in (BmcError, BmcUnreachable, BmcTimeout, BmcBusy, BmcAuthError, BmcUnsupported)}


@runtime_checkable
class SerialConsole(Protocol):
    """One open console. ``read`` returns b"" once the console has ended; ``ended`` then says why."""

    ended: str

    async def start(self) -> None:
        """Connect; raise a BmcError (unreachable, rejected, busy: SOL in use elsewhere) when that fails."""

    async def read(self) -> bytes:
        """The next bytes from the serial port, or b"" when the console ended."""

    async def write(self, data: bytes) -> None:
        """Send bytes to the serial port (keystrokes)."""

    async def close(self) -> None:
        """End the session at the BMC (SOL deactivated); idempotent."""


class IpmiSerialConsole:
    """IPMI Serial-over-LAN, spoken by ``python -m provisioner.bmc.sol_child``."""

    def __init__(self, target: BmcTarget):
        self.target = target
        self.ended = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: list[bytes] = []

    def __repr__(self) -> str:
        return f"IpmiSerialConsole({self.target.endpoint})"

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "provisioner.bmc.sol_child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        config = {
            "address": self.target.address,
            "port": self.target.port,
            "username": self.target.username,
            "password": self.target.password,
            "timeout_s": self.target.timeout_s * 2,
        }
        self._proc.stdin.write(json.dumps(config).encode() + b"\n")
        await self._proc.stdin.drain()
        # SOL login, activation and its first answer: a few round trips; pyghmi retries lost packets itself.
        deadline = self.target.timeout_s * 2 + 2.0
        try:
            while True:
                kind, payload = await asyncio.wait_for(self._frame(), deadline)
                if kind == b"r":
                    return
                if kind == b"d":
                    self._pending.append(payload)
                    continue
                if kind == b"e":
                    raise self._error(payload)
                if kind is None:
                    raise BmcUnreachable(self.target.endpoint, "the SOL helper ended before SOL came up")
        except TimeoutError:
            await self.close()
            raise BmcTimeout(self.target.endpoint, f"serial-over-LAN did not come up within {deadline:g} s") from None
        except BmcError:
            await self.close()
            raise

    def _error(self, payload: bytes) -> BmcError:
        try:
            problem = json.loads(payload)
            cls = _ERRORS.get(problem.get("reason"), BmcError)
            detail = str(problem.get("detail") or "serial-over-LAN failed")
        except ValueError:
            cls, detail = BmcError, "serial-over-LAN failed"
        if cls is BmcBusy and "another client" in detail:
            detail = "serial-over-LAN is in use by another client (ipmitool sol activate?); deactivate it there"
        return cls(self.target.endpoint, f"serial console: {detail}")

    async def _frame(self) -> tuple[bytes | None, bytes]:
        try:
            header = await self._proc.stdout.readexactly(5)
            kind, length = header[:1], int.from_bytes(header[1:], "big")
            return kind, await self._proc.stdout.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None, b""

    async def read(self) -> bytes:
        if self._pending:
            return self._pending.pop(0)
        while not self.ended:
            kind, payload = await self._frame()
            if kind == b"d" and payload:
                return payload
            if kind == b"i":
                return b"\r\n[BMC: " + payload + b"]\r\n"
            if kind == b"e":
                self.ended = str(self._error(payload))
            elif kind is None:
                self.ended = self.ended or "the serial-over-LAN session ended"
        return b""

    async def write(self, data: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing() or self.ended:
            return
        proc.stdin.write(data)
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()

    async def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), CLOSE_GRACE_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        self.ended = self.ended or "closed"


# -- the fake driver's console ------------------------------------------------------------------------------

_HELP = b"commands: help, uname, uptime, whoami, echo TEXT, exit\r\n"


class LineDiscipline:
    """What a getty's terminal line does with keystrokes: echo, backspace, ^C, a password typed unseen, CR LF
    as one Enter, lines of at most MAX_LINE characters. The simulated consoles (the fake driver's, the lab
    machines') give ``emit(bytes)``, ``_prompt()``, ``_enter(line)`` and ``_state`` ("password" hides input)."""

    MAX_LINE = 256
    _last = b""  # the previous key, to take CR LF as one Enter

    def keys(self, data: bytes) -> None:
        line, last = self._line, self._last
        for byte in data:
            char = bytes([byte])
            if char in (b"\r", b"\n"):
                if not (char == b"\n" and last == b"\r"):  # CR LF from a terminal is one Enter
                    self.emit(b"\r\n")
                    typed = line.decode(errors="replace")
                    line.clear()
                    self._enter(typed)
            elif char in (b"\x7f", b"\x08"):
                if line:
                    line.pop()
                    if self._state != "password":
                        self.emit(b"\x08 \x08")
            elif char == b"\x03":
                line.clear()
                self.emit(b"^C\r\n")
                self._prompt()
            elif byte >= 0x20 and len(line) < self.MAX_LINE:
                line += char
                if self._state != "password":
                    self.emit(char)
            last = char
        self._last = last


class FakeSerialConsole(LineDiscipline):
    """A simulated serial console: a getty-like login prompt (any name, any password) and a tiny shell."""

    def __init__(self, hostname: str = "demo"):
        self.hostname = hostname
        self.ended = ""
        self._out: asyncio.Queue[bytes] = asyncio.Queue()
        self._line = bytearray()
        self._state = "login"  # login, password, shell
        self._user = ""

    def __repr__(self) -> str:
        return f"FakeSerialConsole({self.hostname})"

    async def start(self) -> None:
        self.emit(f"\r\nDebian GNU/Linux 12 {self.hostname} ttyS0\r\n\r\n".encode())
        self._prompt()

    def emit(self, data: bytes) -> None:
        self._out.put_nowait(data)

    def _prompt(self) -> None:
        if self._state == "login":
            self.emit(f"{self.hostname} login: ".encode())
        elif self._state == "password":
            self.emit(b"Password: ")
        else:
            self.emit(f"{self._user}@{self.hostname}:~$ ".encode())

    async def read(self) -> bytes:
        if self.ended and self._out.empty():
            return b""
        data = await self._out.get()
        return data

    async def write(self, data: bytes) -> None:
        self.keys(data)

    def _enter(self, line: str) -> None:
        if self._state == "login":
            if line.strip():
                self._user, self._state = line.strip()[:32], "password"
        elif self._state == "password":
            self._state = "shell"
            self.emit(b"Linux " + self.hostname.encode() + b" 6.1.0-28-amd64 #1 SMP x86_64\r\n\r\n")
        else:
            self._run(line.strip())
        self._prompt()

    def _run(self, command: str) -> None:
        name, _, rest = command.partition(" ")
        if not name:
            return
        if name == "echo":
            self.emit(rest.encode() + b"\r\n")
        elif name == "help":
            self.emit(_HELP)
        elif name == "uname":
            self.emit(b"Linux\r\n")
        elif name == "uptime":
            self.emit(b" 12:00:00 up 3 days,  2:14,  1 user,  load average: 0.00, 0.01, 0.05\r\n")
        elif name == "whoami":
            self.emit(self._user.encode() + b"\r\n")
        elif name in ("exit", "logout"):
            self._state = "login"
            self.emit(f"\r\nDebian GNU/Linux 12 {self.hostname} ttyS0\r\n\r\n".encode())
        else:
            self.emit(f"-bash: {name[:40]}: command not found\r\n".encode())

    async def close(self) -> None:
        self.ended = self.ended or "closed"
        self.emit(b"")
