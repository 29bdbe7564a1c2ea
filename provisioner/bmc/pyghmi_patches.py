"""Every place the project reaches into pyghmi's internals, in one module: what pyghmi does not offer, or
gets wrong, and what we do about it. Written against pyghmi 1.6.19 (pinned in pyproject.toml and
requirements.lock); ``PYGHMI_VERSION`` names it, and a test fails when the installed pyghmi is another one, so
an upgrade starts by reading this module again.

How to tell when a patch can go (try each against the new pyghmi with tests/integration/bmc and the lab):

* ``AsyncPrivilegeSession``: pyghmi's ``Session._req_priv_level`` still sends "set session privilege"
  synchronously from its packet handler. When pyghmi makes it asynchronous (a callback, no wait) and stops
  re-logging in by itself on a timeout, use ``pyghmi.ipmi.private.session.Session`` directly.
* ``signal_packets_to`` (the signalling ``sessionqueue``): pyghmi offers no notification when its IO thread
  queues a packet. When it does (a callback, an event), use that.
* ``ensure_io_thread``: pyghmi's IO thread (``session.iothread``) dies on any exception in its loop. When
  its loop catches and logs what one session throws, drop it.
* ``kick_io_thread``: pyghmi's IO thread selects on the socket list it saw last. When adding a socket wakes
  its ``select``, drop it.
* ``reset_after_fork``: pyghmi keeps module and class state (threads, locks, routing tables) with no fork
  handler. When it registers its own (``os.register_at_fork``), drop it.
* ``ServerSession`` and ``answer_no_cipher_match``/``unroute`` (the lab's simulated BMC, provisioner/lab/bmc.py):
  pyghmi's ``IpmiServer`` answers every RMCP+ open-session request with "OK, SHA-1" whatever was proposed
  (its own client proposes SHA-256 first, takes the "OK" as agreement, then fails RAKP2 with "Incorrect
  password"); it binds through the process-wide client IO thread (so it competes with IPMI clients in the
  same process); it ignores an unknown user name (the client waits for a timeout, a real BMC answers
  "unauthorized name"); and it leaves ``clientpriv`` unset when a client asks for callback or user
  privilege, then crashes replying. When ``ipmitool -I lanplus`` and pyghmi's client log in to an unpatched
  ``IpmiServer`` running beside a client in one process, with a wrong user answered at once, drop them.

Plain Python, no Django (provisioner/bmc is the hardware edge).
"""

from __future__ import annotations

import collections
import logging
import struct
import threading
from collections.abc import Callable

from pyghmi.ipmi.private import constants as pyghmi_constants
from pyghmi.ipmi.private import serversession
from pyghmi.ipmi.private import session as pyghmi_session

log = logging.getLogger(__name__)

PYGHMI_VERSION = "1.6.19"

# --- the client: provisioner/bmc/ipmi_loop.py -------------------------------------------------------------


class AsyncPrivilegeSession(pyghmi_session.Session):
    """pyghmi's session with the post-login privilege request made asynchronous.

    pyghmi sends "set session privilege" synchronously from inside its packet handler, which would block this
    loop (and stall on the queued-reply race of ipmi_loop.py). On a timeout it also re-logs in by itself and then blocks
    waiting for the old command's slot; here ``logontries = 0`` turns that off and the loop re-logs in
    without blocking (see ``provisioner.bmc.ipmi_loop.IpmiLoop._fire_retry_timers``).
    """

    def _req_priv_level(self):
        self.logged = 1
        self.logoutexpiry = None
        self.maxtimeout = 4
        self.logontries = 0
        self.raw_command(
            netfn=6, command=0x3B, data=[self.privlevel], callback=self._keepalive_wrapper(self._got_priv_level)
        )

    def _got_priv_level(self, response):
        code = (response or {}).get("code")
        if response is None or code == 0xFFFF or response.get("error") or code:
            self.logged = 0
            self.logging = False
            if response is None or code == 0xFFFF:
                self.onlogon({"error": "timeout waiting for the session privilege answer"})
            else:
                detail = response.get("error") or f"completion code 0x{code:02X}"
                self.onlogon({"error": f"operator privilege refused ({detail})"})
            return
        self.logging = False
        self.onlogon({"success": True})


_on_packet: Callable[[], None] | None = None


class _SignallingDeque(collections.deque):
    """pyghmi's IO thread appends a session here when a packet for it arrives; tell the loop at once."""

    def append(self, item):
        super().append(item)
        callback = _on_packet
        if callback is not None:
            callback()


def signal_packets_to(callback: Callable[[], None]) -> None:
    """Have ``callback`` called (on pyghmi's IO thread) whenever a packet for a session is queued."""
    global _on_packet
    _on_packet = callback
    old = pyghmi_session.sessionqueue
    if not isinstance(old, _SignallingDeque):
        pyghmi_session.sessionqueue = _SignallingDeque(old)


def ensure_io_thread() -> None:
    # pyghmi's IO thread dies on any exception (e.g. a KeyError when a session is logged out just as a packet
    # for it arrives), and with it every IPMI answer in the process. Bring it back.
    thread = pyghmi_session.iothread
    if thread is not None and not thread.is_alive() and pyghmi_session.iosockets:
        log.error("pyghmi's IPMI IO thread died; restarting it")
        replacement = pyghmi_session.define_worker()()
        replacement.daemon = True
        pyghmi_session.iothread = replacement
        replacement.start()


def kick_io_thread() -> None:
    # pyghmi's IO thread selects on the socket list it saw last; a session may have just added a socket.
    sockets = pyghmi_session.iosockets
    if sockets and pyghmi_session.myself:
        try:
            sockets[0].sendto(b"\x01", (pyghmi_session.myself, sockets[0].getsockname()[1]))
        except OSError:
            pass


def reset_after_fork() -> None:
    """Give a forked child (e.g. an RQ work horse) a clean pyghmi: the parent's threads did not come along."""
    ps = pyghmi_session
    ps.iothread = None
    ps.iothreadready = False
    ps.iothreadwaiters = []
    ps.ioqueue = collections.deque()
    ps.iosockets = []
    ps.selectdeadline = 0
    ps.sessionqueue = _SignallingDeque()
    ps.KEEPALIVE_SESSIONS = threading.RLock()
    ps.WAITING_SESSIONS = threading.RLock()
    for table in ("bmc_handlers", "waiting_sessions", "initting_sessions", "keepalive_sessions", "socketpool"):
        getattr(ps.Session, table).clear()
    ps.Session.iterwaiters.clear()
    ps.Session.socketchecking = None
    AsyncPrivilegeSession.socketchecking = None


# --- the server: the lab's simulated BMC (provisioner/lab/bmc.py) ------------------------------------------

# Algorithms of cipher suite 3: HMAC-SHA1 authentication, HMAC-SHA1-96 integrity, AES-CBC-128 privacy. The
# only one pyghmi's server implements.
CIPHER_SUITE_3 = (1, 1, 1)
# RMCP+ status codes.
_RMCP_NO_CIPHER_MATCH = 0x11
_RMCP_UNAUTHORIZED_NAME = 0x0D


class ServerSession(serversession.ServerSession):
    """pyghmi's server session, answering an unknown user name and any requested privilege."""

    # pyghmi leaves this unset when a client asks for callback/user privilege, then crashes replying.
    clientpriv = 2

    def _got_rakp1(self, data):
        username = bytes(data[28:]).decode("utf-8", errors="replace")
        if self.authdata.get(username) is None:
            payload = bytearray([data[0], _RMCP_UNAUTHORIZED_NAME, 0, 0]) + self.clientsessionid
            self.send_payload(payload, pyghmi_constants.payload_types["rakp2"], retry=False)
            return
        super()._got_rakp1(data)


def proposed_cipher_suite(request: bytearray) -> tuple[int, int, int]:
    """The (authentication, integrity, confidentiality) algorithms an RMCP+ open-session request proposes."""
    return request[12], request[20], request[28]


def answer_no_cipher_match(sock, request: bytearray, sockaddr) -> None:
    """Refuse an open-session request for a cipher suite other than 3, so the client falls back to it."""
    reply = bytearray([request[0], _RMCP_NO_CIPHER_MATCH, 0, 0]) + request[4:8]
    header = bytearray(b"\x06\x00\xff\x07\x06")
    header.append(pyghmi_constants.payload_types["rmcpplusopenresponse"])
    header += struct.pack("<IIH", 0, 0, len(reply))
    sock.sendto(bytes(header + reply), sockaddr)


def unroute(session: ServerSession, sockaddr, port: int) -> None:
    """Take a server session out of pyghmi's client routing table, where it registers itself: the server
    routes its own packets, and the client IO thread must not take them."""
    handlers = pyghmi_session.Session.bmc_handlers.get(sockaddr)
    if handlers is not None and handlers.get(port) is session:
        del handlers[port]
        if not handlers:
            pyghmi_session.Session.bmc_handlers.pop(sockaddr, None)
