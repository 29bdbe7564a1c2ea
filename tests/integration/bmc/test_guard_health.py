"""Sensors and the event log through the guard: passed through, and under a lock that outlives their budget."""

from __future__ import annotations

import threading
import time

import pytest

from provisioner.bmc import BmcTarget, get_driver
from provisioner.bmc.fake import fake_bmc, reset_fakes
from provisioner.bmc.guard import GuardedDriver
from provisioner.bmc.health import HEALTH_BUDGET_S


@pytest.fixture(autouse=True)
def _fresh_fakes():
    reset_fakes()
    yield
    reset_fakes()


def test_health_calls_pass_through_and_hold_the_lock_for_their_whole_budget(redis_client, redis_prefix):
    target = BmcTarget("127.0.4.1", 623, "admin", "pw", timeout_s=1.0)
    guarded = GuardedDriver(get_driver("fake", target), redis_client, min_interval_s=0.0, key_prefix=redis_prefix)
    assert [r.name for r in guarded.sensors()][:2] == ["Inlet Temp", "CPU1 Temp"]
    assert len(guarded.events()) == 4
    assert guarded.clear_events() == 4 and len(guarded.events()) == 1
    fake_bmc("127.0.4.1", 623).delay_s = 0.3
    ttls = []
    reader = threading.Thread(target=guarded.sensors)
    reader.start()
    deadline = time.monotonic() + 2
    while not ttls and time.monotonic() < deadline:
        ttl = redis_client.pttl(f"{redis_prefix}lock:127.0.4.1:623")
        if ttl > 0:
            ttls.append(ttl)
    reader.join()
    # A power command's lock lasts 4 round trips (5 s here); a sensor sweep's, its budget and one more round trip.
    assert ttls and ttls[0] > HEALTH_BUDGET_S * 1000
