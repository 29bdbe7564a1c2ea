"""The test session's own Redis database, and the only way a test may empty it.

Tests need a clean Redis (RQ queues, registries, the BMC guard's locks), but the Redis on a development or
CI machine is shared: `make run`, other checkouts and other test sessions use other databases of the same
server. So a session first claims the database TEST_REDIS_URL names: it must be empty, or carry the marker
a test session of this project wrote whose process is gone. A database holding anything else, or claimed by
a session still running, is refused with a message that says what to do. After that, `flush()` empties
that database and nothing else, and only while the claim is still ours.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass

import pytest
import redis

MARKER = "provisioner:test-session"


class ClaimRefused(Exception):
    """The Redis database is not this session's to empty."""


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str  # the process's start time (Linux /proc), so a reused pid is not taken for the owner
    session: str

    @classmethod
    def this_process(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _started(os.getpid()), uuid.uuid4().hex)

    def encode(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def decode(cls, raw: bytes) -> Owner | None:
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    def alive(self) -> bool:
        if self.host != socket.gethostname():
            return True  # another machine's session: nothing here can tell, so it is assumed running
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return _started(self.pid) == self.started


def _started(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # Field 22 (starttime); the command name (field 2) may hold spaces, so count after its ')'.
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _where(conn: redis.Redis) -> str:
    kwargs = conn.connection_pool.connection_kwargs
    place = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    return f"Redis {place} database {kwargs.get('db', 0)}"


class Claim:
    def __init__(self, conn: redis.Redis, owner: Owner | None = None):
        self.conn = conn
        self.owner = owner or Owner.this_process()
        self.held = False

    def take(self) -> None:
        """Claim the database (emptying what a finished session left), or raise ClaimRefused."""

        def claim(pipe: redis.client.Pipeline) -> None:
            raw = pipe.get(MARKER)
            if raw is None:
                size = pipe.dbsize()
                if size:
                    sample = ", ".join(k.decode(errors="replace") for k in pipe.scan(count=5)[1][:5])
                    raise ClaimRefused(
                        f"{_where(self.conn)} holds {size} key(s) that no test session of provisioner wrote "
                        f"(e.g. {sample}). The tests empty the database they use, so they refuse this one: point "
                        "TEST_REDIS_URL (REDIS_URL under pytest) at an empty database, e.g. "
                        "redis://127.0.0.1:6379/15."
                    )
            else:
                holder = Owner.decode(raw)
                if holder is None:
                    raise ClaimRefused(f"{_where(self.conn)} has an unreadable {MARKER} key: {raw[:200]!r}.")
                if holder.session != self.owner.session and holder.alive():
                    raise ClaimRefused(
                        f"{_where(self.conn)} is in use by another test session (pid {holder.pid} on {holder.host}). "
                        "Give each session its own TEST_REDIS_URL database, or wait for that one to end."
                    )
            pipe.multi()
            pipe.flushdb()
            pipe.set(MARKER, self.owner.encode())

        self.conn.transaction(claim, MARKER)
        self.held = True

    def flush(self) -> None:
        """Empty the claimed database, keeping the claim. Refuses if the claim is no longer ours."""
        if not self.held:
            self.take()
            return

        def flush(pipe: redis.client.Pipeline) -> None:
            raw = pipe.get(MARKER)
            holder = Owner.decode(raw) if raw is not None else None
            if holder is None or holder.session != self.owner.session:
                raise ClaimRefused(
                    f"{_where(self.conn)} is no longer claimed by this test session "
                    f"({MARKER} is {raw!r}); it was not emptied."
                )
            pipe.multi()
            pipe.flushdb()
            pipe.set(MARKER, self.owner.encode())

        self.conn.transaction(flush, MARKER)


_session: Claim | None = None


def session_claim() -> Claim:
    """This test session's claim on the database in settings.REDIS_URL, taken on first use."""
    global _session
    if _session is None:
        from core import queues

        _session = Claim(queues.connection())
    if not _session.held:
        _session.take()
    return _session


def flush() -> None:
    """Empty this session's Redis database: every key the session's tests, workers and servers wrote.
    Ends the session when the database is no longer its own: every later test would fail the same way."""
    try:
        session_claim().flush()
    except ClaimRefused as exc:
        pytest.exit(f"Redis: {exc} Something outside this test session emptied or took it.", returncode=3)
