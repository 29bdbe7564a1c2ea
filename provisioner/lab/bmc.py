"""An in-process IPMI BMC on 127.0.0.1 for the demo lab and for tests, built on pyghmi's BMC server class.

It speaks real IPMI 2.0 / RMCP+ over UDP (pyghmi's client and ``ipmitool -I lanplus -C 3`` both work), keeps
power and boot state like a real BMC (a one-time boot device is consumed by the next power-on), can be slowed
down or broken on purpose, and tells a simulated machine when it is powered on and from which device.

pyghmi's ``Bmc``/``IpmiServer`` needs fixes to serve pyghmi's own client; they are in
provisioner/bmc/pyghmi_patches.py with the client's, which says what each is for and when it can go. Here:
only cipher suite 3 is accepted (so the client falls back to it), each :class:`LoopbackBmc` has its own
socket and thread instead of pyghmi's shared client IO thread (so several run side by side and stop, and
none steals an IPMI client's packets), and an unknown user name is answered, as a real BMC does.

Serial-over-LAN (payload type 1) and the machine's serial port behind it are in sol.py; this module hands it the
payload commands and wakes its thread for serial output and retransmits.
"""

from __future__ import annotations

import json
import logging
import os
import random
import selectors
import socket
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from pyghmi.ipmi import bmc as pyghmi_bmc
from pyghmi.ipmi.private import constants as pyghmi_constants

from provisioner.bmc import BmcTarget, BootDevice, pyghmi_patches

from .bmc_health import LabHealth
from .sol import SerialShell, SolServer

log = logging.getLogger(__name__)

_MAX_SESSIONS = 64

_DEVICE_BY_SELECTOR = {
    0x0: BootDevice.DEFAULT,
    0x1: BootDevice.PXE,
    0x2: BootDevice.DISK,
    0x3: BootDevice.DISK,
    0x5: BootDevice.CD,
}
_BOOT_VALID = 0x80
_BOOT_PERSISTENT = 0x40

# Completion codes.
_OK = 0x00
_PARAM_NOT_SUPPORTED = 0x80
_INVALID_COMMAND = 0xC1
_INVALID_DATA = 0xCC
_NOT_IN_PRESENT_STATE = 0xD5


class _LabSession(pyghmi_patches.ServerSession):
    """A server session that counts password checks and can fail every login on purpose."""

    def _got_rakp1(self, data):
        self.bmc.login_attempts += 1
        if self.bmc.lose_login_answers > 0:
            # The password was checked (and counted), but the answer is lost on the way back.
            self.bmc.lose_login_answers -= 1
            return
        username = bytes(data[28:]).decode("utf-8", errors="replace")
        if self.bmc.reject_credentials and self.authdata.get(username) is not None:
            # Sign RAKP2 with a key the client cannot know: it sees exactly what a wrong password looks like.
            self.authdata = {username: os.urandom(12).hex()}
        super()._got_rakp1(data)

    # pyghmi's packet handler reads these for SOL packets; a server session never sets them.
    sol_handler = None
    last_payload_type = None

    def close_server_session(self):
        self.bmc.sol.end(self)
        self.bmc._forget_session(self.sockaddr)


class LoopbackBmc(pyghmi_bmc.Bmc):
    """A simulated BMC on its own UDP port and thread. Use :meth:`start`, then :meth:`stop` (or :meth:`die`).

    Faults, all changeable while running: ``latency_s`` (delay before each answer), ``drop_packets``
    (probability 0..1 of ignoring a packet; 1 means silent), ``drop_next`` (ignore that many next packets),
    ``reject_credentials`` (every login fails as
    with a wrong password), ``lose_login_answers`` (that many next logins are checked but never answered)
    and :meth:`die` (the BMC is gone: socket closed, nothing answers).

    Hooks: ``on_power_on`` callbacks get the :class:`BootDevice` the machine boots from (at power-on and at
    reset); ``on_power_off`` callbacks get nothing. They run in the BMC thread after the answer is sent.
    """

    def __init__(
        self,
        username: str = "admin",
        password: str = "admin",
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        powered_on: bool = False,
        latency_s: float = 0.0,
    ):
        # IpmiServer.__init__ is not called: it binds through pyghmi's shared client IO machinery (see above).
        self.revision = 0
        self.deviceid = 0x20
        self.firmwaremajor = 1
        self.firmwareminor = 0
        self.ipmiversion = 2
        self.additionaldevices = 0
        self.mfgid = 0
        self.prodid = 0
        self.pktqueue = []
        self.uuid = uuid.uuid4()
        self.kg = None
        self.timeout = 60
        self.authdata = {username: password}
        #: Where the lab machine's host writes a user it adds in-band (None: it adds none).
        self.users_file: Path | None = None
        self.username = username
        self.password = password
        lanchannel, authtype, authstatus, chancap = 1, 0b10000000, 0b00000100, 0b00000010
        self.authcap = struct.pack("BBBBBBBBB", 0, lanchannel, authtype, authstatus, chancap, 0, 0, 0, 0)
        self.serversocket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.serversocket.bind((address, port))
        self.address, self.port = self.serversocket.getsockname()[:2]

        self.latency_s = latency_s
        self.drop_packets = 0.0
        #: Ignore exactly this many next packets (deterministic loss for tests).
        self.drop_next = 0
        self.reject_credentials = False
        #: Check the next this many logins' passwords but lose the answer (RAKP2), as a lossy network would.
        self.lose_login_answers = 0
        self.on_power_on: list[Callable[[BootDevice], None]] = []
        self.on_power_off: list[Callable[[], None]] = []
        #: Sensors, SDR and SEL (bmc_health.py), answered over IPMI like the rest.
        self.health = LabHealth()

        self.powered_on = powered_on
        self.boot_flags = 0  # boot flags data byte 1: valid / persistent / EFI bits
        self.boot_selector = 0  # boot flags data byte 2: device selector in bits 5:2
        #: Every boot in order, as the BootDevice used; handy in tests.
        self.boots: list[BootDevice] = []
        #: RAKP1 messages received: one per password check, which is what BMCs count towards a lockout.
        self.login_attempts = 0
        #: Every command handled, as (netfn, command, first data byte or None).
        self.commands: list[tuple[int, int, int | None]] = []
        self._state_lock = threading.RLock()
        self._sessions: OrderedDict[tuple, _LabSession] = OrderedDict()
        self._pending_hooks: list[Callable[[], None]] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: The machine's serial port (sol.py) and Serial-over-LAN to it; a lab machine names and narrates it.
        self.serial = SerialShell(f"lab-bmc-{self.port}", powered=lambda: self.powered_on)
        self.sol = SolServer(self.serial, port=self.port, wake=self._wake)

    def __repr__(self) -> str:
        return f"LoopbackBmc({self.address}:{self.port}, power={'on' if self.powered_on else 'off'})"

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> LoopbackBmc:
        self._thread = threading.Thread(target=self._serve, name=f"lab-bmc-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:  # full (the thread is awake anyway) or closed (stopped)
            pass

    def stop(self) -> None:
        """Stop answering and release the port."""
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    die = stop

    def __enter__(self) -> LoopbackBmc:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def target(self, timeout_s: float = 2.0) -> BmcTarget:
        """A driver target for this BMC with the right credentials."""
        return BmcTarget(self.address, self.port, self.username, self.password, timeout_s=timeout_s)

    @property
    def boot_device(self) -> BootDevice:
        """The device the next power-on would boot from."""
        if not self.boot_flags & _BOOT_VALID:
            return BootDevice.DEFAULT
        return _DEVICE_BY_SELECTOR.get((self.boot_selector >> 2) & 0x0F, BootDevice.OTHER)

    # -- network ---------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        # selectors, not select.select: a lab of a thousand BMCs has file descriptors past FD_SETSIZE.
        selector = selectors.DefaultSelector()
        selector.register(self.serversocket, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                ready = selector.select(timeout=0.25 if self.sol.busy else None)
                if self._stopping.is_set():
                    break
                if any(key.fileobj is self._wake_r for key, _ in ready):
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                if any(key.fileobj is self.serversocket for key, _ in ready):
                    self.receive()
                else:
                    self.sol.tick()  # serial output to send, or an unacknowledged SOL packet
        finally:
            selector.close()
            self._close()

    def receive(self) -> None:
        """Read and answer one packet waiting on the socket (the serving thread's, or a fleet's, work)."""
        try:
            data, sockaddr = self.serversocket.recvfrom(3000)
        except OSError:
            return
        if self._stopping.is_set():  # a fleet's member that was stopped (died): nothing answers
            return
        if self.drop_next > 0:
            self.drop_next -= 1
            return
        if self.drop_packets and random.random() < self.drop_packets:
            return
        if self.latency_s and self._stopping.wait(self.latency_s):
            return  # stop() must not wait out a long simulated latency
        try:
            self._handle_packet(bytearray(data), sockaddr)
        except Exception:  # a malformed packet must not kill the BMC
            log.exception("lab BMC %s:%s failed handling a packet", self.address, self.port)
        self._run_hooks()
        self.sol.tick()

    def _close(self) -> None:
        self.serversocket.close()
        self._wake_r.close()
        self._wake_w.close()

    def _handle_packet(self, data: bytearray, sockaddr) -> None:
        if len(data) < 16 or data[0] != 6 or data[2:4] != b"\xff\x07":
            return
        if data[4] == 6:  # IPMI 2.0 / RMCP+ framing
            payload_type = data[5] & 0x3F
            session_id = struct.unpack("<I", bytes(data[6:10]))[0]
            if payload_type == pyghmi_constants.payload_types["rmcpplusopenreq"]:
                self._open_session(data[16:], sockaddr)
                return
            if payload_type == 0 and session_id == 0:
                self.sessionless_data(data, sockaddr)
                return
        elif data[4] == 0:  # IPMI 1.5 without authentication: sessionless (e.g. channel auth capabilities)
            self.sessionless_data(data, sockaddr)
            return
        session = self._sessions.get(sockaddr)
        if session is not None:
            session._handle_ipmi_packet(data, sockaddr=sockaddr, qent=(data, sockaddr, self.serversocket))

    def _open_session(self, request: bytearray, sockaddr) -> None:
        if len(request) < 32:
            return
        if pyghmi_patches.proposed_cipher_suite(request) != pyghmi_patches.CIPHER_SUITE_3:
            pyghmi_patches.answer_no_cipher_match(self.serversocket, request, sockaddr)
            return
        self._forget_session(sockaddr)
        while len(self._sessions) >= _MAX_SESSIONS:
            self.sol.end(self._sessions.popitem(last=False)[1])
        self._take_added_user()
        session = _LabSession(self.authdata, self.kg, sockaddr, self.serversocket, request, self.uuid, bmc=self)
        pyghmi_patches.unroute(session, sockaddr, self.port)  # this BMC routes its own packets
        self._sessions[sockaddr] = session

    def _take_added_user(self) -> None:
        """A user the host added in-band (commissioning's create_bmc_user writes it to ``users_file`` in the lab):
        it can log in from now on, beside the factory user, as on a real BMC."""
        if self.users_file is None:
            return
        try:
            user = json.loads(self.users_file.read_text())
        except (OSError, ValueError):
            return
        if isinstance(user, dict) and user.get("enabled") and user.get("username") and user.get("password"):
            self.authdata[str(user["username"])] = str(user["password"])

    def _forget_session(self, sockaddr) -> None:
        session = self._sessions.pop(sockaddr, None)
        if session is not None:
            self.sol.end(session)

    # -- IPMI commands ---------------------------------------------------------------------------------------

    def handle_raw_request(self, request, session) -> None:
        netfn, command, data = request["netfn"], request["command"], request["data"]
        self.commands.append((netfn, command, data[0] if data else None))
        self.sol.heard_from(session)
        if netfn == 6 and command == 0x01:
            self.send_device_id(session)
        elif netfn == 0 and command == 0x01:
            session.send_ipmi_response(data=[1 if self.powered_on else 0, 0, 0, 0])
        elif netfn == 0 and command == 0x02 and data:
            session.send_ipmi_response(code=self._chassis_control(data[0]))
        elif netfn == 0 and command == 0x08 and data:
            session.send_ipmi_response(code=self._set_boot_options(data))
        elif netfn == 0 and command == 0x09 and data:
            if data[0] & 0x7F != 5:
                session.send_ipmi_response(code=_PARAM_NOT_SUPPORTED)
            else:
                session.send_ipmi_response(data=[1, 5, self.boot_flags, self.boot_selector, 0, 0, 0])
        elif netfn in (0x04, 0x0A):
            code, response = self.health.handle(netfn, command, data, self.powered_on)
            session.send_ipmi_response(code=code, data=response)
        elif self.sol.handle(netfn, command, data, session):
            pass
        else:
            session.send_ipmi_response(code=_INVALID_COMMAND)

    def _chassis_control(self, directive: int) -> int:
        with self._state_lock:
            if directive == 0x00 or directive == 0x05:  # power down / soft shutdown (the lab OS obeys at once)
                if self.powered_on:
                    self.powered_on = False
                    self._pending_hooks.extend(self.on_power_off)
                return _OK
            if directive == 0x01:  # power up
                if not self.powered_on:
                    self.powered_on = True
                    self._boot()
                return _OK
            if directive in (0x02, 0x03):  # power cycle / hard reset: only meaningful while on
                if not self.powered_on:
                    return _NOT_IN_PRESENT_STATE
                self._pending_hooks.extend(self.on_power_off if directive == 0x02 else ())
                self._boot()
                return _OK
            if directive == 0x04:  # diagnostic interrupt
                return _OK
            return _INVALID_DATA

    def _boot(self) -> None:
        device = self._next_boot_device()
        for hook in self.on_power_on:
            self._pending_hooks.append(lambda hook=hook, device=device: hook(device))

    def _next_boot_device(self) -> BootDevice:
        device = self.boot_device
        if self.boot_flags & _BOOT_VALID and not self.boot_flags & _BOOT_PERSISTENT:
            self.boot_flags &= ~_BOOT_VALID  # a one-time override is used up by this boot
        self.boots.append(device)
        return device

    # -- the host's side -------------------------------------------------------------------------------------

    def host_reset(self) -> None:
        """The host rebooted itself (an installer's last step, ``reboot`` in the OS): the firmware starts again
        and uses up a one-time boot device exactly as at a BMC reset. Hooks run in the caller's thread."""
        with self._state_lock:
            if not self.powered_on:
                return
            device = self._next_boot_device()
        for hook in self.on_power_on:
            hook(device)

    def host_power_off(self) -> None:
        """The host powered itself off (``poweroff`` in the OS). Hooks run in the caller's thread."""
        with self._state_lock:
            if not self.powered_on:
                return
            self.powered_on = False
        for hook in self.on_power_off:
            hook()

    def mains(self, powered: bool) -> None:
        """The machine's PDU outlet was switched. Cut: it loses power at once, whatever it ran. Restored: its
        firmware powers it on and boots, as servers set to "restore on AC power" do. Hooks run in the caller's
        thread."""
        if not powered:
            self.host_power_off()
            return
        with self._state_lock:
            if self.powered_on:
                return
            self.powered_on = True
            device = self._next_boot_device()
        for hook in self.on_power_on:
            hook(device)

    def _set_boot_options(self, data) -> int:
        parameter = data[0] & 0x7F
        if parameter in (0, 3, 4):  # set-in-progress, boot info acknowledge, boot initiator info
            return _OK
        if parameter != 5:
            return _PARAM_NOT_SUPPORTED
        if len(data) < 3:
            return _INVALID_DATA
        with self._state_lock:
            self.boot_flags, self.boot_selector = data[1], data[2]
        return _OK

    def _run_hooks(self) -> None:
        hooks, self._pending_hooks = self._pending_hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("lab BMC %s:%s power hook failed", self.address, self.port)


def start_loopback_bmcs(count: int, **kwargs) -> list[LoopbackBmc]:
    """Start ``count`` BMCs on free ports (same keyword arguments as :class:`LoopbackBmc`)."""
    return [LoopbackBmc(**kwargs).start() for _ in range(count)]


class LoopbackFleet:
    """Many loopback BMCs served by one thread: a thousand threads would measure the scheduler, not the
    client. Same BMCs and faults as :class:`LoopbackBmc`, except that a latency delays the whole fleet."""

    def __init__(self, count: int, **kwargs):
        self.bmcs = [LoopbackBmc(**kwargs) for _ in range(count)]
        self._selector = selectors.DefaultSelector()
        for bmc in self.bmcs:
            self._selector.register(bmc.serversocket, selectors.EVENT_READ, bmc)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="lab-bmc-fleet", daemon=True)

    def start(self) -> LoopbackFleet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select():
                    if key.data is not None and not self._stopping.is_set():
                        key.data.receive()
        finally:
            self._selector.close()
            for bmc in self.bmcs:
                bmc._close()
            self._wake_r.close()
            self._wake_w.close()
