"""One thread that owns every pyghmi IPMI session in the process and puts our own deadline on every call.

Why not pyghmi's synchronous API from the calling threads:

* pyghmi 1.6.19 has no overall deadline: a BMC that goes silent during login can block the caller for good.
* With several threads talking to fast BMCs, a reply that pyghmi's IO thread queues before the calling
  thread has registered its waiter is only noticed when the retry timer fires, 0.5-1 s later
  (``session._io_wait``): the call "stalls".
* A second ``Command`` for the same BMC with ``str`` credentials can hang (pyghmi stores them as bytes and
  then fails to match its own live session).

So callers hand requests to this loop and wait on a future with their own deadline. The loop drives pyghmi's
*asynchronous* session API (``onlogon`` and ``raw_command(callback=...)``), is woken directly when pyghmi's IO
thread queues a packet, fires pyghmi's retry timers itself, keeps one logged-in session per BMC for reuse and
logs it out when idle, and never calls into pyghmi code that waits. Where that reaches into pyghmi's internals
(a session subclass, its IO thread and queue, its state after a fork), it goes through pyghmi_patches.py.
"""

from __future__ import annotations

import atexit
import collections
import ipaddress
import logging
import os
import socket
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import pyghmi.exceptions
from pyghmi.ipmi.private import session as pyghmi_session
from pyghmi.ipmi.private import util as pyghmi_util

import provisioner.bmc.pyghmi_patches as pyghmi_patches

from .base import BmcTarget
from .errors import BmcAuthError, BmcBusy, BmcError, BmcTimeout, BmcUnreachable
from .pyghmi_patches import AsyncPrivilegeSession

log = logging.getLogger(__name__)

#: Log out a session idle this long. BMCs drop idle sessions after ~30-60 s (pyghmi keeps them alive at 29 s
#: with traffic we would rather not send); a fresh login costs a few ms, a dead session costs a whole timeout.
IDLE_LOGOUT_S = 20.0
#: Longest the loop sleeps without looking at its timers.
MAX_TICK_S = 1.0
#: IPMI privilege we ask for: operator is enough for chassis control and boot options.
PRIVILEGE_OPERATOR = 3

# pyghmi's login error strings (and ours, below) that mean "these credentials will never work".
_AUTH_ERRORS = (
    "incorrect password",
    "unauthorized name",
    "invalid role",
    "unauthorized role",
    "privilege refused",
    "invalid username",
    "rakp4 integrity",
    "unauthorized guid",
)
# ... and "all session slots are taken": come back when the BMC has expired some.
_BUSY_ERRORS = ("insufficient resources",)
# pyghmi's login states after RAKP1 went out: the BMC may have checked the password already.
_PASSWORD_CHECKED = ("EXPECTINGRAKP2", "EXPECTINGRAKP4")


@dataclass(eq=False)
class _Request:
    netfn: int
    command: int
    data: tuple[int, ...]
    timeout_s: float
    deadline: float
    future: Future = field(default_factory=Future)
    resent_after_login: bool = False
    #: Log in afresh for this request and make one password check at most (see ``submit``).
    single_attempt: bool = False

    def timed_out(self, endpoint: str, what: str = "answer") -> BmcTimeout:
        return BmcTimeout(endpoint, f"no {what} within {self.timeout_s:g} s")


@dataclass(eq=False)
class _Conn:
    """Our side of one BMC: at most one pyghmi session and one command in flight."""

    address: str
    port: int
    username: bytes
    password: bytes = field(repr=False)
    endpoint: str
    session: AsyncPrivilegeSession | None = None
    ready: bool = False
    generation: int = 0
    current: _Request | None = None
    queue: collections.deque = field(default_factory=collections.deque)
    last_used: float = 0.0
    #: The request the session in progress was opened for (a single-attempt request needs its own login).
    login_for: _Request | None = None


class IpmiLoop:
    def __init__(self):
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._incoming: list[tuple[tuple, BmcTarget, str, _Request]] = []
        self._close_requests: list[threading.Event] = []
        self._conns: dict[tuple, _Conn] = {}
        self._thread = threading.Thread(target=self._run, name="ipmi-loop", daemon=True)
        self._thread.start()

    # -- caller side ----------------------------------------------------------------------------------------

    def call(self, target: BmcTarget, netfn: int, command: int, data: tuple[int, ...] = ()) -> dict:
        """Send one IPMI request and return pyghmi's response dict; raise a BmcError on no answer or no login."""
        return wait(target, self.submit(target, netfn, command, data))

    def submit(
        self, target: BmcTarget, netfn: int, command: int, data: tuple[int, ...] = (), *, single_attempt: bool = False
    ) -> Future:
        """Hand one request to the loop without waiting: the future gets pyghmi's response dict or a BmcError
        by ``target.timeout_s``. Many can be in flight at once (one per BMC at a time; the rest queue).

        ``single_attempt`` is for testing credentials: the request logs in afresh (a live session proves
        nothing about today's password) and the password is checked at most once. A login whose RAKP answer
        is lost is not repeated but reported unreachable, because every repeat is one more failure towards
        the account's lockout on a BMC that saw the first.
        """
        started = time.monotonic()
        address = _resolve(target)
        request = _Request(
            netfn,
            command,
            tuple(data),
            target.timeout_s,
            started + target.timeout_s,
            resent_after_login=single_attempt,
            single_attempt=single_attempt,
        )
        key = (address, target.port, target.username, target.password)
        with self._lock:
            self._incoming.append((key, target, address, request))
        self.wake.set()
        return request.future

    def submit_many(self, requests: list[tuple[BmcTarget, int, int, tuple[int, ...]]]) -> list[Future]:
        """``submit`` for many BMCs at once, waking the loop once: each item is (target, netfn, command, data).
        A target whose address does not resolve gets a future that already holds its BmcUnreachable."""
        entries, futures = [], []
        now = time.monotonic()
        for target, netfn, command, data in requests:
            request = _Request(netfn, command, tuple(data), target.timeout_s, now + target.timeout_s)
            futures.append(request.future)
            try:
                address = _resolve(target)
            except BmcError as exc:
                request.future.set_exception(exc)
                continue
            entries.append(((address, target.port, target.username, target.password), target, address, request))
        with self._lock:
            self._incoming.extend(entries)
        self.wake.set()
        return futures

    def close_idle_sessions(self, timeout_s: float = 1.0) -> bool:
        """Log out every session with nothing in flight; True once done (False if the loop did not get to it)."""
        done = threading.Event()
        with self._lock:
            self._close_requests.append(done)
        self.wake.set()
        return done.wait(timeout_s)

    # -- loop side ------------------------------------------------------------------------------------------

    def _run(self):
        while True:
            self.wake.wait(self._next_timer())
            self.wake.clear()
            try:
                self._step()
            except Exception:  # the loop must survive a pyghmi surprise; the affected calls time out
                log.exception("IPMI loop step failed")

    def _step(self):
        pyghmi_patches.ensure_io_thread()
        with self._lock:
            incoming, self._incoming = self._incoming, []
            close_requests, self._close_requests = self._close_requests, []
        for key, target, address, request in incoming:
            conn = self._conns.get(key)
            if conn is None:
                conn = self._conns[key] = _Conn(
                    address=address,
                    port=target.port,
                    username=target.username.encode(),
                    password=target.password.encode(),
                    endpoint=target.endpoint,
                )
            conn.queue.append(request)
        queue = pyghmi_session.sessionqueue
        while queue:
            session = queue.popleft()
            try:
                session.process_pktqueue()
            except Exception:  # one BMC's odd packet must not delay the others' answers
                log.exception("IPMI packet handling failed for %s", getattr(session, "bmc", "?"))
        now = time.monotonic()
        self._fire_retry_timers()
        for key, conn in list(self._conns.items()):
            self._expire(conn, now)
            if conn.current is None and conn.queue:
                self._dispatch(conn)
            elif conn.current is None and not conn.queue and (close_requests or now - conn.last_used > IDLE_LOGOUT_S):
                self._discard(conn)
                del self._conns[key]
        for done in close_requests:
            done.set()

    def _next_timer(self) -> float:
        now = time.monotonic()
        soonest = MAX_TICK_S
        for conn in self._conns.values():
            if conn.current is not None:
                soonest = min(soonest, conn.current.deadline - now)
            if conn.queue:
                soonest = min(soonest, conn.queue[0].deadline - now)
        retry = self._next_retry()
        if retry is not None:
            # pyghmi's clock ticks every 10 ms; do not spin while a due timer waits for the next tick.
            soonest = min(soonest, max(retry, 0.002))
        return max(0.0, soonest)

    def _next_retry(self) -> float | None:
        """Seconds until the first of our sessions' pyghmi retry timers (kept on pyghmi's own clock)."""
        waiting = pyghmi_session.Session.waiting_sessions
        timeouts = [
            waiting.get(conn.session, {}).get("timeout")
            for conn in self._conns.values()
            if conn.session is not None and conn.session in waiting
        ]
        timeouts = [t for t in timeouts if t is not None]
        if not timeouts:
            return None
        return min(timeouts) - pyghmi_util._monotonic_time()

    def _fire_retry_timers(self):
        """What ``Session.wait_for_rsp`` does for timers, for our sessions only: retransmit or give up.

        One exception: the first time a command on an established session goes unanswered, log in afresh and
        send it again. A BMC that rebooted or expired our session early ignores the old session for good, so
        retransmitting on it only burns the caller's whole timeout.
        """
        waiting = pyghmi_session.Session.waiting_sessions
        now = pyghmi_util._monotonic_time()  # os.times() based, 10 ms ticks: not comparable to time.monotonic()
        due = []
        with pyghmi_util.protect(pyghmi_session.WAITING_SESSIONS):
            for conn in self._conns.values():
                session = conn.session
                if session is not None and waiting.get(session, {}).get("timeout", now + 1) < now:
                    waiting.pop(session, None)
                    due.append((conn, session))
        for conn, session in due:
            single = conn.login_for
            if (
                single is not None
                and single.single_attempt
                and not conn.ready
                and session.sessioncontext in _PASSWORD_CHECKED
                and conn.queue
                and conn.queue[0] is single
            ):
                # pyghmi would start the login over: a second password check. Report, do not repeat.
                conn.queue.popleft()
                detail = "no answer to the login; not repeated, so as not to count twice towards a lockout"
                _fail(single, BmcUnreachable(conn.endpoint, detail))
                self._discard(conn)
                continue
            request = conn.current
            if conn.ready and request is not None and not request.resent_after_login:
                request.resent_after_login = True
                conn.current = None
                conn.queue.appendleft(request)
                self._discard(conn)
            else:
                session._timedout()

    def _expire(self, conn: _Conn, now: float):
        if conn.current is not None and conn.current.deadline <= now:
            request, conn.current = conn.current, None
            _fail(request, request.timed_out(conn.endpoint))
            # The BMC may be gone or may have dropped our session: never reuse a session that went quiet.
            self._discard(conn)
        while conn.queue and conn.queue[0].deadline <= now:
            what = "login" if conn.session is not None and not conn.ready else "answer"
            request = conn.queue.popleft()
            _fail(request, request.timed_out(conn.endpoint, what))
            if not conn.queue and not conn.ready:
                self._discard(conn)

    def _dispatch(self, conn: _Conn):
        session = conn.session
        head = conn.queue[0]
        if head.single_attempt and conn.login_for is not head:
            # A live session proves nothing about today's password: log in again for this request.
            self._discard(conn)
            self._login(conn)
            return
        if session is not None and (session.broken or (conn.ready and not session.logged)):
            self._discard(conn)
            session = None
        if session is None:
            self._login(conn)
            return
        if not conn.ready or session._isincommand():
            return
        request = conn.queue.popleft()
        conn.current = request
        generation = conn.generation

        def on_response(response, conn=conn, request=request, generation=generation):
            self._on_response(conn, request, generation, response)

        try:
            session.raw_command(
                netfn=request.netfn,
                command=request.command,
                data=request.data,
                callback=session._keepalive_wrapper(on_response),
            )
        except pyghmi.exceptions.IpmiException:
            # Not sent: the session died between checks. Put the request back and log in again.
            conn.current = None
            conn.queue.appendleft(request)
            self._discard(conn)

    def _login(self, conn: _Conn):
        conn.generation += 1
        conn.ready = False
        conn.login_for = conn.queue[0] if conn.queue else None
        generation = conn.generation

        def on_logon(response, conn=conn, generation=generation):
            self._on_logon(conn, generation, response)

        try:
            session = AsyncPrivilegeSession(
                bmc=conn.address,
                userid=conn.username,
                password=conn.password,
                port=conn.port,
                onlogon=on_logon,
                privlevel=PRIVILEGE_OPERATOR,
                keepalive=False,
            )
        except (pyghmi.exceptions.IpmiException, OSError) as exc:
            self._fail_all(conn, BmcUnreachable(conn.endpoint, f"cannot start an IPMI session: {exc}"))
            return
        pyghmi_patches.kick_io_thread()
        conn.session = session
        if session.logged and not session.logging:
            # pyghmi handed back a live session it already had for these credentials.
            conn.ready = True

    def _on_logon(self, conn: _Conn, generation: int, response: dict):
        if generation != conn.generation:
            return
        error = response.get("error")
        if error:
            conn.session = None  # pyghmi marks it broken itself right after this callback
            conn.ready = False
            conn.generation += 1
            self._fail_all(conn, classify_login_error(conn.endpoint, conn.username.decode(errors="replace"), error))
            return
        conn.ready = True
        conn.last_used = time.monotonic()
        self.wake.set()  # dispatch the queued request on the next step

    def _on_response(self, conn: _Conn, request: _Request, generation: int, response: dict | None):
        if generation != conn.generation or conn.current is not request:
            return
        conn.current = None
        conn.last_used = time.monotonic()
        if response is None or response.get("code") == 0xFFFF:
            _fail(request, request.timed_out(conn.endpoint))
            conn.session = None
            conn.ready = False
            conn.generation += 1
            return
        if not request.future.done():
            request.future.set_result(response)
        self.wake.set()

    def _fail_all(self, conn: _Conn, exc: BmcError):
        if conn.current is not None:
            _fail(conn.current, exc)
            conn.current = None
        while conn.queue:
            _fail(conn.queue.popleft(), exc)

    def _discard(self, conn: _Conn):
        """Drop the session without waiting for anything: close it on the wire, forget its timers."""
        session, conn.session = conn.session, None
        conn.ready = False
        conn.generation += 1
        if session is None or session.broken:
            return
        session.incommand = False
        session.lastpayload = None
        try:
            session._mark_broken()
        except Exception:  # closing a session to a dead BMC must not take the loop down
            log.debug("discarding IPMI session to %s failed", conn.endpoint, exc_info=True)


def classify_login_error(endpoint: str, username: str, error: str) -> BmcError:
    """Map pyghmi's login failure text to our taxonomy: rejected (fatal), busy or unreachable (retry)."""
    lowered = str(error).lower()
    if any(marker in lowered for marker in _AUTH_ERRORS):
        return BmcAuthError(endpoint, f"login as {username!r} rejected: {error}")
    if any(marker in lowered for marker in _BUSY_ERRORS):
        return BmcBusy(endpoint, f"login refused, no free session: {error}")
    return BmcUnreachable(endpoint, f"login failed: {error}")


def wait(target: BmcTarget, future: Future) -> dict:
    """The result of a submitted request: pyghmi's response dict, or its BmcError raised."""
    try:
        # The loop fails the future at the deadline; the margin only covers a loop that died.
        return future.result(timeout=target.timeout_s + 1.0)
    except FutureTimeout:
        raise BmcTimeout(target.endpoint, f"no answer within {target.timeout_s:g} s") from None


def _fail(request: _Request, exc: BmcError):
    if not request.future.done():
        request.future.set_exception(exc)


def _resolve(target: BmcTarget) -> str:
    # Resolve in the calling thread: a slow DNS lookup must not stall the loop that serves every BMC.
    try:
        return str(ipaddress.ip_address(target.address))  # the usual case, without the resolver's cost
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(target.address, target.port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise BmcUnreachable(target.endpoint, f"cannot resolve address: {exc.strerror or exc}") from None
    return infos[0][4][0]


_loop: IpmiLoop | None = None
_loop_lock = threading.Lock()


def get_loop() -> IpmiLoop:
    global _loop
    if _loop is None:
        with _loop_lock:
            if _loop is None:
                _loop = IpmiLoop()
    return _loop


def close_sessions(timeout_s: float = 1.0) -> None:
    """Log out of every idle BMC session this process holds.

    BMCs have few session slots (often 4 to 16) and free an abandoned one only after their own timeout, so a
    short-lived process should call this before it ends. It runs at interpreter exit by itself, but not in a
    process that leaves through ``os._exit`` (an RQ work horse does): call it at the end of such a job.
    """
    if _loop is not None:
        _loop.close_idle_sessions(timeout_s)


def _wake_loop() -> None:
    loop = _loop
    if loop is not None:
        loop.wake.set()


def _reset_after_fork():
    """A forked child (e.g. an RQ work horse) starts without the parent's loop and with a clean pyghmi."""
    global _loop, _loop_lock
    _loop = None
    _loop_lock = threading.Lock()
    pyghmi_patches.reset_after_fork()


pyghmi_patches.signal_packets_to(_wake_loop)
atexit.register(close_sessions)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
