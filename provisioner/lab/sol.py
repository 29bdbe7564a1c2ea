"""Serial-over-LAN for the lab's simulated BMCs (IPMI 2.0 chapters 15 and 24), and the serial port behind it.

:class:`SolServer` answers the payload commands (activate, deactivate, activation status, instance info,
channel payload support, SOL configuration) and carries SOL packets inside the RMCP+ session, sealed like the
session's IPMI packets: packet sequence numbers 1..15, acknowledgements with the accepted character count, and
a retransmit of an unacknowledged packet. One SOL instance per BMC, held by one session at a time, as on
most real BMCs.

:class:`SerialShell` is the machine's ttyS0: a getty-like login prompt (any name, any password), echo, a few
commands (``help``, ``hostname``, ``uname -a``, ``status``) and the lines the machine prints as it boots. A
machine that is off prints nothing and echoes nothing.

Everything that sends runs in the BMC's thread; other threads (the lab machine printing boot lines) only queue
output and wake it.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable

from provisioner.bmc.serial import LineDiscipline

SOL_PAYLOAD = 1
#: Largest character data in one SOL packet either way (the accepted count is one byte).
MAX_CHARS = 200
RETRANSMIT_S = 1.0
MAX_TRIES = 8
#: A session holding SOL that sent nothing for this long (no keepalive either) is gone: another may take over.
IDLE_S = 60.0

# Completion codes of Activate/Deactivate Payload.
_OK = 0x00
_ALREADY = 0x80  # activate: already active (on another session); deactivate: already deactivated
_INVALID_DATA = 0xCC
_PARAM_NOT_SUPPORTED = 0x80

_HELP = (
    b"Commands: help, hostname, uname [-a], status, whoami, echo TEXT, clear, exit\r\n"
    b"This is the lab machine's serial console (ttyS0), reached over IPMI Serial-over-LAN.\r\n"
)


class SerialShell(LineDiscipline):
    """The serial port of a lab machine: what a technician sees on its console."""

    def __init__(self, hostname: str, *, powered: Callable[[], bool], status: Callable[[], str] | None = None):
        self.hostname = hostname
        self.powered = powered
        self.status = status or (lambda: "power on" if powered() else "power off")
        #: Where output goes (the SOL server); None drops it, as a serial line with nobody listening does.
        self.sink: Callable[[bytes], None] | None = None
        self._lock = threading.Lock()
        self._line = bytearray()
        self._last = b""
        self._state = "login"  # login, password, shell
        self._user = ""

    def emit(self, data: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink(data)

    def print_line(self, text: str) -> None:
        """A line the machine prints (firmware, boot loader, kernel): it ends whatever was being typed."""
        self.emit(b"\r\n" + text.encode("utf-8", errors="replace") + b"\r\n")

    def login_prompt(self) -> None:
        """A fresh getty: the login prompt, as after a boot."""
        with self._lock:
            self._state, self._user = "login", ""
            self._line.clear()
            self.emit(f"\r\nDebian GNU/Linux 12 {self.hostname} ttyS0\r\n\r\n".encode())
            self._prompt()

    def redraw(self) -> None:
        """A console attached: show where the machine is, as pressing Enter would."""
        if self.powered():
            with self._lock:
                self.emit(b"\r\n")
                self._prompt()

    def _prompt(self) -> None:
        if self._state == "login":
            self.emit(f"{self.hostname} login: ".encode())
        elif self._state == "password":
            self.emit(b"Password: ")
        else:
            self.emit(f"{self._user}@{self.hostname}:~# ".encode())

    def feed(self, data: bytes) -> None:
        """Keystrokes from the console."""
        if not self.powered():
            return  # nothing runs on a machine that is off: no echo, no answer
        with self._lock:
            self.keys(data)

    def _enter(self, line: str) -> None:
        if self._state == "login":
            if line.strip():
                self._user, self._state = line.strip()[:32], "password"
        elif self._state == "password":
            self._state = "shell"
            self.emit(f"Linux {self.hostname} 6.1.0-28-amd64 #1 SMP Debian x86_64\r\n\r\n".encode())
        else:
            self._run(line.strip())
        self._prompt()

    def _run(self, command: str) -> None:
        name, _, rest = command.partition(" ")
        if not name:
            return
        if name == "help":
            self.emit(_HELP)
        elif name == "hostname":
            self.emit(self.hostname.encode() + b"\r\n")
        elif name == "uname":
            if rest.strip() == "-a":
                self.emit(
                    f"Linux {self.hostname} 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 x86_64 "
                    "GNU/Linux\r\n".encode()
                )
            else:
                self.emit(b"Linux\r\n")
        elif name == "status":
            self.emit(self.status().encode("utf-8", errors="replace") + b"\r\n")
        elif name == "whoami":
            self.emit(self._user.encode() + b"\r\n")
        elif name == "echo":
            self.emit(rest.encode() + b"\r\n")
        elif name == "clear":
            self.emit(b"\x1b[H\x1b[2J")
        elif name in ("exit", "logout"):
            self._state, self._user = "login", ""
            self.emit(f"\r\nDebian GNU/Linux 12 {self.hostname} ttyS0\r\n\r\n".encode())
        else:
            self.emit(f"-bash: {name[:40]}: command not found\r\n".encode())


class SolServer:
    """The SOL side of one lab BMC. ``handle`` takes IPMI requests, ``on_packet`` SOL packets, ``tick`` sends."""

    def __init__(self, shell: SerialShell, *, port: int, wake: Callable[[], None]):
        self.shell = shell
        self.port = port
        self._wake = wake
        self.session = None  # the server session holding the SOL instance
        self._lock = threading.Lock()
        self._pending = bytearray()  # output not yet sent
        self._seq = 0  # our last packet sequence number, 1..15
        self._outstanding: list | None = None  # [seq, payload, sent_at, tries] awaiting the console's ack
        self._last_in = 0  # the console's last packet sequence number we took
        self._after: Callable[[], None] | None = None
        self._heard = 0.0
        shell.sink = self.output

    @property
    def active(self) -> bool:
        return self.session is not None

    # -- IPMI commands ---------------------------------------------------------------------------------------

    def handle(self, netfn: int, command: int, data, session) -> bool:
        """Answer a payload or SOL configuration command; False when it is none of those."""
        if netfn == 0x06 and command == 0x48:  # Activate Payload
            session.send_ipmi_response(**self._activate(data, session))
        elif netfn == 0x06 and command == 0x49:  # Deactivate Payload
            session.send_ipmi_response(code=self._deactivate(data, session))
        elif netfn == 0x06 and command == 0x4A:  # Get Payload Activation Status
            if not data or data[0] & 0x3F != SOL_PAYLOAD:
                session.send_ipmi_response(data=[0, 0, 0])
            else:
                session.send_ipmi_response(data=[1, 1 if self.active else 0, 0])
        elif netfn == 0x06 and command == 0x4B:  # Get Payload Instance Info
            if len(data) < 2 or data[0] & 0x3F != SOL_PAYLOAD or data[1] != 1:
                session.send_ipmi_response(code=_INVALID_DATA)
            else:
                owner = self.session.localsid if self.session is not None else 0
                session.send_ipmi_response(data=list(struct.pack("<I", owner)) + [0] * 8)
        elif netfn == 0x06 and command == 0x4E:  # Get Channel Payload Support: IPMI, SOL, session setup
            session.send_ipmi_response(data=[0x03, 0x00, 0x3F, 0x00, 0, 0, 0, 0])
        elif netfn == 0x06 and command == 0x4F:  # Get Channel Payload Version: 1.0 for IPMI and SOL
            ok = data and data[-1] in (0, SOL_PAYLOAD)
            session.send_ipmi_response(data=[0x10] if ok else [], code=_OK if ok else _INVALID_DATA)
        elif netfn == 0x0C and command == 0x21:  # Set SOL Configuration Parameters: accepted, nothing changes
            session.send_ipmi_response()
        elif netfn == 0x0C and command == 0x22:  # Get SOL Configuration Parameters
            answer = self._configuration(data[1] if len(data) > 1 else -1)
            if answer is None:
                session.send_ipmi_response(code=_PARAM_NOT_SUPPORTED)
            else:
                session.send_ipmi_response(data=[0x11, *answer])
        else:
            return False
        return True

    def _activate(self, data, session) -> dict:
        if len(data) < 2 or data[0] & 0x3F != SOL_PAYLOAD or data[1] != 1:
            return {"code": _INVALID_DATA}
        if self.session is not None and time.monotonic() - self._heard > IDLE_S:
            self.end(self.session)  # its console went away without deactivating
        if self.session is not None:
            return {"code": _ALREADY}
        with self._lock:
            self.session = session
            session.sol_handler = lambda payload, session=session: self.on_packet(session, payload)
            self._pending.clear()
            self._outstanding = None
            self._last_in = 0
            self._heard = time.monotonic()
        # aux data, inbound size, outbound size (little-endian), UDP port (this BMC's), VLAN (none).
        answer = [0, 0, 0, 0, *struct.pack("<HHHH", MAX_CHARS, MAX_CHARS, self.port, 0xFFFF)]
        self._wake_after(self.shell.redraw)
        return {"data": answer}

    def _wake_after(self, action: Callable[[], None]) -> None:
        # Output produced before the activation answer is sent would reach the console before it knows SOL is
        # up; run it in the next tick instead.
        self._after = action
        self._wake()

    def _deactivate(self, data, session) -> int:
        if len(data) < 2 or data[0] & 0x3F != SOL_PAYLOAD or data[1] != 1:
            return _INVALID_DATA
        if self.session is None:
            return _ALREADY
        self.end(self.session)
        return _OK

    def heard_from(self, session) -> None:
        if session is self.session:
            self._heard = time.monotonic()

    def end(self, session) -> None:
        """The session holding SOL deactivated it or logged out (or went away)."""
        if session is not self.session:
            return
        with self._lock:
            session.sol_handler = None
            self.session = None
            self._pending.clear()
            self._outstanding = None

    def _configuration(self, parameter: int) -> list[int] | None:
        return {
            0: [0],  # set in progress: set complete
            1: [1],  # SOL enable
            2: [0x02],  # SOL authentication: user privilege, no forced encryption/authentication
            3: [5, 5],  # character accumulate interval (5 ms units), send threshold
            4: [7, 10],  # retry count, retry interval (10 ms units)
            5: [0x0A],  # non-volatile bit rate: 115200
            6: [0x0A],  # volatile bit rate: 115200
            7: [1],  # payload channel
            8: list(struct.pack("<H", self.port)),  # payload port
        }.get(parameter)

    # -- SOL packets -----------------------------------------------------------------------------------------

    def on_packet(self, session, payload) -> None:
        """A SOL packet from the console (BMC thread)."""
        if session is not self.session or len(payload) < 4:
            return
        self._heard = time.monotonic()
        seq, ack, accepted, flags = payload[0] & 0x0F, payload[1] & 0x0F, payload[2], payload[3]
        del flags  # break, flush and DCD/DSR requests: a lab serial port has nothing to do with them
        outstanding = self._outstanding
        if ack and outstanding is not None and ack == outstanding[0]:
            sent = outstanding[1][4:]
            with self._lock:
                self._outstanding = None
                if accepted < len(sent):  # partly taken: the rest goes first next time
                    self._pending[:0] = sent[accepted:]
        if seq:
            data = bytes(payload[4:])
            if seq != self._last_in:  # not a retransmit of what we took already
                self._last_in = seq
                self.shell.feed(data)
            session.send_payload(bytearray([0, seq, len(data), 0]), payload_type=SOL_PAYLOAD, retry=False)

    def output(self, data: bytes) -> None:
        """Bytes from the serial port (any thread)."""
        if self.session is None:
            return
        with self._lock:
            self._pending += data
            if len(self._pending) > 65536:  # nobody reads: keep the newest, as a UART FIFO overruns
                del self._pending[:-65536]
        if threading.current_thread().name != f"lab-bmc-{self.port}":
            self._wake()

    def tick(self) -> None:
        """Send what is waiting and retransmit what was not acknowledged (BMC thread)."""
        after, self._after = self._after, None
        if after is not None:
            after()
        session = self.session
        if session is None:
            return
        now = time.monotonic()
        with self._lock:
            outstanding = self._outstanding
            if outstanding is None and self._pending:
                self._seq = self._seq % 15 + 1
                chunk = bytes(self._pending[:MAX_CHARS])
                del self._pending[:MAX_CHARS]
                outstanding = self._outstanding = [self._seq, bytearray([self._seq, 0, 0, 0]) + chunk, 0.0, 0]
            elif outstanding is None or now - outstanding[2] < RETRANSMIT_S:
                return
            if outstanding[3] >= MAX_TRIES:  # the console is gone: drop what it missed
                self._outstanding = None
                self._pending.clear()
                return
            outstanding[2], outstanding[3] = now, outstanding[3] + 1
        session.send_payload(outstanding[1], payload_type=SOL_PAYLOAD, retry=False)

    @property
    def busy(self) -> bool:
        """Something waits to be sent or acknowledged: the BMC thread should come back soon."""
        return self.session is not None and (self._outstanding is not None or bool(self._pending))
