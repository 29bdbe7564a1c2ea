"""ICMP echo to hosts (not BMCs), from the site's worker: is the machine's own network up?

Two ways, the same results:

* ``socket``: an unprivileged ICMP socket (``socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)``), which Linux allows
  when the process's group is inside ``net.ipv4.ping_group_range``. One socket pings every host at once: all
  requests go out, the replies are matched by sequence number and source, and the whole sweep lasts one
  timeout at most however many hosts are silent.
* ``binary``: the system's ``ping`` (iputils, which holds the raw-socket capability itself), one process per
  host, a bounded number at a time. For workers whose group the kernel does not let open ICMP sockets.

``auto`` takes the socket when the kernel allows it, else the binary. Plain Python, no Django.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass

#: ``ping`` processes running at once on the binary path: a site of a thousand hosts does not fork a thousand.
MAX_PROCESSES = 64
_ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}
_PROTO = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}
_TIME = re.compile(r"time[=<]([0-9.]+) ?ms")


class Method(enum.StrEnum):
    AUTO = "auto"  # the socket when the kernel allows it, else the binary
    SOCKET = "socket"  # unprivileged ICMP socket (net.ipv4.ping_group_range must cover our group)
    BINARY = "binary"  # the system's ping(8)


class PingUnavailable(Exception):
    """Neither way of pinging works on this host; the message says what to change."""


@dataclass(frozen=True)
class PingResult:
    address: str
    reachable: bool
    latency_s: float | None = None
    error: str = ""  # why not reachable, for people


def socket_allowed(family: int = socket.AF_INET) -> bool:
    """Whether this process may open an unprivileged ICMP socket (its group is in ping_group_range)."""
    try:
        socket.socket(family, socket.SOCK_DGRAM, _PROTO[family]).close()
    except OSError:
        return False
    return True


def choose(method: Method | str = Method.AUTO, binary: str = "ping") -> Method:
    """The method ``method`` resolves to here; raises PingUnavailable when it cannot work."""
    method = Method(method)
    if method in (Method.AUTO, Method.SOCKET) and socket_allowed():
        return Method.SOCKET
    if method == Method.SOCKET:
        raise PingUnavailable(
            f"this process (gid {os.getgid()}) may not open ICMP sockets: add its group to the sysctl "
            f"net.ipv4.ping_group_range (now {_group_range()}), or use the ping binary"
        )
    if shutil.which(binary) is None:
        raise PingUnavailable(
            f"no ICMP socket allowed (net.ipv4.ping_group_range is {_group_range()}, gid {os.getgid()}) "
            f"and no {binary!r} program: install iputils-ping or widen the range"
        )
    return Method.BINARY


def ping_many(
    addresses: list[str], *, timeout_s: float = 1.0, method: Method | str = Method.AUTO, binary: str = "ping"
) -> dict[str, PingResult]:
    """One echo request to each address; {address: PingResult}. Lasts about ``timeout_s`` at most on the
    socket path (all at once), and ``timeout_s`` per MAX_PROCESSES hosts on the binary path."""
    wanted = list(dict.fromkeys(addresses))
    results: dict[str, PingResult] = {}
    valid = []
    for address in wanted:
        try:
            valid.append(str(ipaddress.ip_address(address)))
        except ValueError:
            results[address] = PingResult(address, False, error=f"{address!r} is not an IP address")
    if valid:
        if choose(method, binary) == Method.SOCKET:
            results.update(_ping_socket(valid, timeout_s))
        else:
            results.update(_ping_binary(valid, timeout_s, binary))
    return {address: results[address] for address in wanted}


# --- the socket path -------------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _packet(family: int, seq: int, token: bytes) -> bytes:
    # The kernel sets the identifier (the socket's "port") and, for ICMPv6, the checksum itself.
    header = struct.pack("!BBHHH", _ECHO_REQUEST[family], 0, 0, 0, seq)
    return struct.pack("!BBHHH", _ECHO_REQUEST[family], 0, _checksum(header + token), 0, seq) + token


def _ping_socket(addresses: list[str], timeout_s: float) -> dict[str, PingResult]:
    results: dict[str, PingResult] = {}
    token = os.urandom(8)
    families = {a: socket.AF_INET6 if ":" in a else socket.AF_INET for a in addresses}
    sockets: dict[int, socket.socket] = {}
    try:
        for family in set(families.values()):
            sock = socket.socket(family, socket.SOCK_DGRAM, _PROTO[family])
            sock.setblocking(False)
            sockets[family] = sock
        pending: dict[tuple[int, int], tuple[str, float]] = {}  # (family, seq) -> (address, sent at)
        for index, address in enumerate(addresses):
            family = families[address]
            seq = index % 0x10000
            try:
                sockets[family].sendto(_packet(family, seq, token), (address, 0))
            except OSError as exc:  # no route, network down: known at once
                results[address] = PingResult(address, False, error=_os_error(exc))
                continue
            pending[(family, seq)] = (address, time.monotonic())
        deadline = time.monotonic() + timeout_s
        poller = select.poll()
        by_fd = {sock.fileno(): (family, sock) for family, sock in sockets.items()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ in poller.poll(left * 1000):
                family, sock = by_fd[fd]
                _drain(sock, family, token, pending, results)
    finally:
        for sock in sockets.values():
            sock.close()
    for address, _ in pending.values():
        results[address] = PingResult(address, False, error=f"no echo reply within {timeout_s:g} s")
    return results


def _drain(sock, family, token, pending, results) -> None:
    while True:
        try:
            data, source = sock.recvfrom(2048)
        except BlockingIOError:
            return
        except OSError:  # an ICMP error queued for the socket (e.g. host unreachable): that host times out
            continue
        received = time.monotonic()
        if len(data) < 8 + len(token) or data[0] != _ECHO_REPLY[family] or data[8 : 8 + len(token)] != token:
            continue
        seq = struct.unpack("!H", data[6:8])[0]
        entry = pending.get((family, seq))
        if entry is None or ipaddress.ip_address(source[0]) != ipaddress.ip_address(entry[0]):
            continue
        del pending[(family, seq)]
        results[entry[0]] = PingResult(entry[0], True, latency_s=received - entry[1])


def _os_error(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"cannot send: {exc.strerror or exc}" + (f" ({name})" if name else "")


def _group_range() -> str:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            return '"' + " ".join(f.read().split()) + '"'
    except OSError:
        return "unknown"


# --- the binary path -------------------------------------------------------------------------------------


def _ping_binary(addresses: list[str], timeout_s: float, binary: str) -> dict[str, PingResult]:
    results: dict[str, PingResult] = {}
    wait = f"{max(timeout_s, 0.001):.3f}"
    queue = list(addresses)
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    while queue or running:
        while queue and len(running) < MAX_PROCESSES:
            address = queue.pop(0)
            command = [binary, "-n", "-c", "1", "-W", wait, address]
            try:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            except OSError as exc:
                results[address] = PingResult(address, False, error=f"cannot run {binary}: {exc.strerror or exc}")
                continue
            running[address] = (process, time.monotonic())
        for address, (process, started) in list(running.items()):
            if process.poll() is None:
                if time.monotonic() - started > timeout_s + 5:  # ping itself stopped keeping its own timeout
                    process.kill()
                else:
                    continue
            out, err = process.communicate()
            del running[address]
            results[address] = _parse(address, process.returncode, out, err, timeout_s)
        if running:
            time.sleep(0.005)
    return results


def _parse(address: str, code: int, out: str, err: str, timeout_s: float) -> PingResult:
    match = _TIME.search(out)
    if code == 0 and match:
        return PingResult(address, True, latency_s=float(match.group(1)) / 1000)
    if code == 1:
        return PingResult(address, False, error=f"no echo reply within {timeout_s:g} s")
    detail = (err.strip() or out.strip()).splitlines()
    return PingResult(address, False, error=(detail[-1] if detail else f"ping exited with {code}")[:300])
