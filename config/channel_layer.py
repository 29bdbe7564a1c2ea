"""The websocket layer: channels_redis's, made to wait out a Redis restart.

channels_redis raises its Redis error out of receive(), which ends every consumer waiting on it: a Redis
restart closed every browser's websocket (1011) at once. Here receive() waits for Redis to come back,
and the groups this process's sockets belong to (which the restart forgot) are joined again as soon as
it is back, so live events resume without a reconnect. Nothing is lost meanwhile: the consumers sweep
the database for events they have not sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import redis
from channels_redis.core import RedisChannelLayer as _RedisChannelLayer

log = logging.getLogger(__name__)

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)
# Retry pause while Redis is down, doubling up to the maximum: a restart takes seconds.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


class RedisChannelLayer(_RedisChannelLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.joined: dict[str, set[str]] = defaultdict(set)  # this process's channels → their groups
        self.down_since: float | None = None

    async def group_add(self, group, channel):
        await super().group_add(group, channel)
        self.joined[channel].add(group)

    async def group_discard(self, group, channel):
        self.joined[channel].discard(group)
        if not self.joined[channel]:
            del self.joined[channel]
        await super().group_discard(group, channel)

    async def receive(self, channel):
        pause = RETRY_FIRST_S
        while True:
            try:
                message = await super().receive(channel)
            except REDIS_DOWN as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # The read was cut short by our own cancellation (a socket closing, a loop shutting
                    # down), which the client can surface as a connection error: end, never wait on.
                    raise asyncio.CancelledError from exc
                loop = asyncio.get_running_loop()
                if self.down_since is None:
                    self.down_since = loop.time()
                    log.warning("websocket layer: Redis is unreachable (%s); sockets stay open and wait", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_S)
                await self._rejoin(channel)
                continue
            if self.down_since is not None:
                log.warning("websocket layer: Redis is back after %.1f s", asyncio.get_running_loop().time()
                            - self.down_since)
                self.down_since = None
            return message

    async def _rejoin(self, channel) -> None:
        """Join this channel's groups again (a restarted Redis has none); quietly, while Redis is still down."""
        try:
            for group in list(self.joined.get(channel, ())):
                await super().group_add(group, channel)
        except REDIS_DOWN:
            pass
