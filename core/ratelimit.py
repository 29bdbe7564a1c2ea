"""Fixed-window rate limits, counted in Redis (the queues' connection), for callers who present no credential.

A window is one Redis key per limit and caller (``provisioner:rate:<limit>:<caller>``): INCR, and an expiry set by
the first call of the window. One round trip per call, no clock of our own, and every web process shares the
count. A fixed window lets a caller through twice the limit across a window's edge; for refusing floods that is
close enough, and it costs nothing to keep.

Whether a limit fails open or closed when Redis cannot be reached is the caller's decision (``Unavailable``):
this module only says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from core import queues

PREFIX = "provisioner:rate:"


class Unavailable(Exception):
    """Redis could not be asked: nothing is known about the caller's rate."""


@dataclass(frozen=True)
class Limit:
    name: str  # part of the key: which limit this is
    calls: int  # how many calls a window allows
    window_s: float  # how long a window lasts


def hit(limit: Limit, caller: str) -> float:
    """Count one call of ``caller`` against ``limit``: 0.0 when it is allowed, else the seconds until its window
    ends (when the next call will be). Raises Unavailable when Redis cannot be reached."""
    key = f"{PREFIX}{limit.name}:{caller}"
    window_ms = max(1, round(limit.window_s * 1000))
    try:
        pipe = queues.connection().pipeline(transaction=True)
        pipe.incr(key)
        pipe.pexpire(key, window_ms, nx=True)
        pipe.pttl(key)
        count, _, ttl_ms = pipe.execute()
    except (redis.RedisError, OSError) as exc:
        raise Unavailable(f"{type(exc).__name__}: {exc}") from None
    if count <= limit.calls:
        return 0.0
    return max(ttl_ms, 1) / 1000
