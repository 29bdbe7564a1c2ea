"""The websocket layer waits out a Redis outage, but never outlives its own cancellation."""

from __future__ import annotations

import asyncio

import pytest
import redis
from channels_redis.core import RedisChannelLayer as Library

from config import channel_layer


class CutShortOnCancel(channel_layer.RedisChannelLayer):
    """A client that answers a cancelled read with a connection error, as a socket closed under it can."""

    calls = 0

    async def _library_receive(self, channel):
        type(self).calls += 1
        if type(self).calls > 1:  # read again after its cancellation: the bug; fail rather than hang
            raise RuntimeError("receive went on reading after it was cancelled")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise redis.ConnectionError("Connection closed by server.") from None


@pytest.fixture
def layer(monkeypatch):
    monkeypatch.setattr(Library, "receive", lambda self, channel: self._library_receive(channel))
    CutShortOnCancel.calls = 0
    return CutShortOnCancel(hosts=["redis://127.0.0.1:1/0"])


def test_a_cancelled_receive_ends_even_when_the_client_calls_it_a_connection_error(layer):
    async def scenario():
        task = asyncio.create_task(layer.receive("specific.abc!def"))
        await asyncio.sleep(0.05)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "receive did not end"
        assert task.cancelled()

    asyncio.run(scenario())
    assert CutShortOnCancel.calls == 1  # not read again after the cancellation


def test_a_real_outage_is_waited_out(layer, monkeypatch):
    outcomes = [redis.ConnectionError("down"), redis.TimeoutError("slow"), {"type": "ok"}]

    async def flaky(self, channel):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(Library, "receive", flaky)
    monkeypatch.setattr(channel_layer, "RETRY_FIRST_S", 0.01)
    assert asyncio.run(layer.receive("specific.abc!def")) == {"type": "ok"}
    assert outcomes == []
