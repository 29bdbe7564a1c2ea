"""asyncssh through a chain of jump hosts, with pinned host keys. No Django: the service layer reads
the database, builds these plain routes, and runs the coroutines here.

Every connection ignores the worker's ~/.ssh/config, known_hosts and ssh-agent: what reaches a machine
is exactly what the database says, so the same job behaves the same on every worker.
"""

from __future__ import annotations

import asyncio
import math
import os
import shlex
import time
from dataclasses import dataclass, field

import asyncssh

from . import errors, keys

# Read size for command output; the cap is enforced on the total, this only bounds one await.
_CHUNK = 65536


@dataclass(frozen=True)
class Endpoint:
    """One SSH server on the way: a jump host or the machine itself."""

    label: str  # for people: "jump host jump-dc1-1 (10.0.0.1:22)" or "web01 (10.1.0.7:22)"
    address: str
    port: int
    username: str
    private_key: str = field(repr=False)
    pinned_host_keys: tuple = ()  # asyncssh.SSHKey; empty with accept_new_host_key only
    accept_new_host_key: bool = False
    certificate: str = ""  # an OpenSSH user certificate for private_key: log in with it instead of the bare key


@dataclass
class Connected:
    """An open connection to the target and the host key it proved it holds."""

    conn: asyncssh.SSHClientConnection
    host_key: asyncssh.SSHKey


@dataclass(frozen=True)
class Output:
    exit_status: int | None  # None when killed by a signal or cut off by the timeout
    exit_signal: str
    output: bytes  # stdout and stderr interleaved as they arrived, at most max_output bytes
    total_bytes: int  # what the command wrote, kept or not
    timed_out: bool
    duration_s: float

    @property
    def truncated(self) -> bool:
        return self.total_bytes > len(self.output)


# After the pinned types, so a server that lacks them still offers a key and the refusal can show it,
# instead of dropping the connection for want of a common algorithm (which would read as "unreachable").
# Ed25519 first: it is what a fresh install pins when nothing is pinned yet. No SHA-1 ssh-rsa.
_FALLBACK_HOST_KEY_ALGS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
)


def _host_key_algs(pins) -> list[str]:
    algs = [a.decode() for key in pins for a in key.sig_algorithms]
    return list(dict.fromkeys(algs + list(_FALLBACK_HOST_KEY_ALGS)))


class _PinningClient(asyncssh.SSHClient):
    """Sees the host key a server offers when it is not a pinned one, so the refusal can show it."""

    def __init__(self, accept_new: bool):
        self.accept_new = accept_new
        self.offered: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host, addr, port, key) -> bool:
        # Called only for keys outside the pinned set. asyncssh then still makes the server prove it
        # holds the private half, so accepting here trusts no more than the offer itself.
        self.offered = key
        return self.accept_new


async def _connect(endpoint: Endpoint, *, tunnel, connect_timeout: float, is_bastion: bool) -> Connected:
    pins = list(endpoint.pinned_host_keys)
    client = _PinningClient(accept_new=endpoint.accept_new_host_key)
    kinds = (
        (errors.BastionUnreachable, errors.BastionHostKeyMismatch, errors.BastionAuthFailed)
        if is_bastion
        else (errors.TargetUnreachable, errors.TargetHostKeyMismatch, errors.TargetAuthFailed)
    )
    unreachable, mismatch, auth_failed = kinds
    if not pins and not endpoint.accept_new_host_key:
        raise errors.TargetHostKeyUnknown(
            f"No host key is pinned for {endpoint.label}; refusing to connect. Pin one (admin: machine host keys) "
            "or let an install's verification record it.",
            host=endpoint.label,
        )
    try:
        client_key = keys.parse_private_key(endpoint.private_key)
        client_keys = (
            [(client_key, asyncssh.import_certificate(endpoint.certificate))] if endpoint.certificate else [client_key]
        )
    except (keys.BadKey, asyncssh.KeyImportError) as exc:
        raise errors.AccessNotConfigured(f"The stored key for {endpoint.label} is unusable: {exc}") from None
    try:
        conn = await asyncssh.connect(
            endpoint.address,
            endpoint.port,
            tunnel=tunnel or (),
            username=endpoint.username,
            client_keys=client_keys,
            client_factory=lambda: client,
            # With the accept-new policy nothing is pinned, so every offer reaches the client callback.
            known_hosts=([] if endpoint.accept_new_host_key else pins, [], []),
            server_host_key_algs=_host_key_algs(pins),
            preferred_auth="publickey",
            agent_path=None,
            config=None,
            connect_timeout=connect_timeout,
            login_timeout=connect_timeout,
        )
    except asyncssh.HostKeyNotVerifiable:
        offered = keys.describe([client.offered]) if client.offered else "a key it could not prove it holds"
        raise mismatch(
            f"{endpoint.label} offered host key {offered}, but the pinned key is {keys.describe(pins)}. Refusing to "
            "connect: the host was reinstalled, or something else answers at its address. Check the key on the "
            "host's console and update the pin if the change is expected.",
            host=endpoint.label,
        ) from None
    except asyncssh.KeyExchangeFailed as exc:
        # The server has none of the pinned key types, so it never offered a key to compare.
        raise mismatch(
            f"{endpoint.label} offers none of the pinned host key types ({keys.describe(pins)}): {exc.reason}. "
            "Refusing to connect.",
            host=endpoint.label,
        ) from None
    except asyncssh.PermissionDenied:
        what = "the session certificate" if endpoint.certificate else "the key"
        raise auth_failed(
            f"{endpoint.label} refused {what} of user {endpoint.username!r} (publickey authentication failed).",
            host=endpoint.label,
        ) from None
    except asyncssh.ChannelOpenError as exc:
        # The previous hop answered but could not reach this one.
        raise unreachable(
            f"The previous jump host could not connect to {endpoint.label}: {exc.reason}.", host=endpoint.label
        ) from None
    except TimeoutError:
        raise unreachable(
            f"{endpoint.label} did not answer within {connect_timeout:g} s.", host=endpoint.label
        ) from None
    except OSError as exc:
        raise unreachable(
            f"Could not connect to {endpoint.label}: {os.strerror(exc.errno) if exc.errno else exc}.",
            host=endpoint.label,
        ) from None
    except asyncssh.Error as exc:
        # Disconnected or lost mid-handshake: the host answered but is not (yet) a usable SSH server.
        raise unreachable(f"{endpoint.label} closed the connection: {exc.reason}.", host=endpoint.label) from None
    host_key = conn.get_server_host_key()
    return Connected(conn, host_key)


async def open_chain(hops: list[Endpoint], *, connect_timeout: float) -> list[asyncssh.SSHClientConnection]:
    """Connect hop 1 directly and each later hop through the one before. The caller closes them (close_all)."""
    conns: list[asyncssh.SSHClientConnection] = []
    try:
        for hop in hops:
            connected = await _connect(
                hop, tunnel=conns[-1] if conns else None, connect_timeout=connect_timeout, is_bastion=True
            )
            conns.append(connected.conn)
    except BaseException:
        await close_all(conns)
        raise
    return conns


async def connect_target(
    target: Endpoint, *, tunnel: asyncssh.SSHClientConnection | None, connect_timeout: float
) -> Connected:
    return await _connect(target, tunnel=tunnel, connect_timeout=connect_timeout, is_bastion=False)


async def close_all(conns) -> None:
    for conn in reversed(conns):
        conn.close()
    for conn in reversed(conns):
        try:
            await asyncio.wait_for(conn.wait_closed(), 2)
        except (TimeoutError, OSError, asyncssh.Error):
            pass


def bounded(command: str, timeout_s: float) -> str:
    """The command wrapped so that the machine itself kills it (and its process group) a second after our own
    timeout. Closing the channel is not enough: a command that does not write never notices, and sshd
    refuses signal requests for root sessions ("session signalling requires privilege separation")."""
    shell = '"${SHELL:-/bin/sh}" -c ' + shlex.quote(command)
    limit = math.ceil(timeout_s) + 1  # whole seconds: busybox's timeout takes no fractions
    return f"if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL {limit} {shell}; else exec {shell}; fi"


async def run(conn: asyncssh.SSHClientConnection, command: str, *, timeout_s: float, max_output: int) -> Output:
    """Run one command; keep at most max_output bytes of its output but read all of it, so a command
    that prints a lot still finishes with its own exit status instead of blocking on a full window."""
    started = time.monotonic()
    kept = bytearray()
    total = 0
    timed_out = False
    process = await conn.create_process(bounded(command, timeout_s), encoding=None, stderr=asyncssh.STDOUT)

    async def drain():
        nonlocal total
        while chunk := await process.stdout.read(_CHUNK):
            total += len(chunk)
            room = max_output - len(kept)
            if room > 0:
                kept.extend(chunk[:room])
        await process.wait_closed()

    try:
        await asyncio.wait_for(drain(), timeout_s)
    except TimeoutError:
        timed_out = True
        try:
            # Ends it at once where sshd allows signals (non-root sessions); elsewhere the wrapper's timeout does.
            process.kill()
        except (OSError, asyncssh.Error):
            pass
        process.close()
    signal = process.exit_signal[0] if process.exit_signal else ""
    return Output(
        exit_status=None if timed_out else process.exit_status,
        exit_signal=signal,
        output=bytes(kept),
        total_bytes=total,
        timed_out=timed_out,
        duration_s=round(time.monotonic() - started, 3),
    )
