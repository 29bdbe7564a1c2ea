"""The guard with the machine's Redis: one command in flight per BMC, spaced apart, across threads and processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from provisioner.bmc import BmcBusy, BmcTarget, BmcUnreachable, PowerState, get_driver
from provisioner.bmc.fake import fake_bmc, reset_fakes
from provisioner.bmc.guard import GuardedDriver

from .conftest import ROOT


@pytest.fixture(autouse=True)
def _fresh_fakes():
    reset_fakes()
    yield
    reset_fakes()


class Recording:
    """A fake driver that records when each command ran (monotonic clock: shared by processes on one host)."""

    def __init__(self, target: BmcTarget, hold_s: float):
        self.inner = get_driver("fake", target)
        self.target = target
        self.hold_s = hold_s
        self.spans: list[tuple[float, float]] = []

    def power_state(self) -> PowerState:
        started = time.monotonic()
        time.sleep(self.hold_s)
        state = self.inner.power_state()
        self.spans.append((started, time.monotonic()))
        return state


def assert_serial_and_spaced(spans, interval_s):
    spans = sorted(spans)
    for (_, previous_end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert next_start >= previous_end, "two commands overlapped"
        assert next_start - previous_end >= interval_s * 0.95, "interval not respected"


def test_threads_take_turns_with_the_interval(redis_client, redis_prefix):
    target = BmcTarget("10.1.1.1", 623, "admin", "pw")
    recording = Recording(target, hold_s=0.01)
    guarded = GuardedDriver(recording, redis_client, min_interval_s=0.03, key_prefix=redis_prefix)
    with ThreadPoolExecutor(4) as pool:
        states = list(pool.map(lambda _: guarded.power_state(), range(8)))
    assert states == [PowerState.OFF] * 8
    assert len(recording.spans) == 8
    assert_serial_and_spaced(recording.spans, 0.03)


def test_different_bmcs_do_not_wait_for_each_other(redis_client, redis_prefix):
    drivers = [
        GuardedDriver(
            Recording(BmcTarget("10.1.1.1", port, "admin", "pw"), hold_s=0.1),
            redis_client,
            min_interval_s=1,
            key_prefix=redis_prefix,
        )
        for port in (623, 624, 625)
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda d: d.power_state(), drivers))
    assert time.monotonic() - started < 0.25


_CHILD = """
import json, sys, time
import redis
from provisioner.bmc import BmcTarget, get_driver
from provisioner.bmc.guard import GuardedDriver
prefix, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = BmcTarget("10.2.2.2", 623, "admin", "pw")
inner = get_driver("fake", target)
class Recording:
    target = inner.target
    spans = []
    def power_state(self):
        started = time.monotonic(); time.sleep(0.01); inner.power_state()
        self.spans.append((started, time.monotonic()))
recording = Recording()
guarded = GuardedDriver(recording, redis.Redis.from_url(url), min_interval_s=0.04, key_prefix=prefix)
for _ in range(count):
    guarded.power_state()
print(json.dumps(recording.spans))
"""


def test_processes_take_turns_with_the_interval(redis_url, redis_prefix):
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, redis_prefix, redis_url, "4"], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    spans = []
    for child in children:
        out, _ = child.communicate(timeout=30)
        assert child.returncode == 0
        spans.extend(tuple(span) for span in json.loads(out))
    assert len(spans) == 12
    assert_serial_and_spaced(spans, 0.04)


def test_busy_when_the_wait_would_be_too_long(redis_client, redis_prefix):
    target = BmcTarget("10.3.3.3", 623, "admin", "pw")
    holder = GuardedDriver(Recording(target, hold_s=0.3), redis_client, min_interval_s=0, key_prefix=redis_prefix)
    impatient = GuardedDriver(
        get_driver("fake", target), redis_client, min_interval_s=0, max_wait_s=0.05, key_prefix=redis_prefix
    )
    thread = threading.Thread(target=holder.power_state)
    thread.start()
    time.sleep(0.05)
    with pytest.raises(BmcBusy) as caught:
        impatient.power_state()
    thread.join()
    assert caught.value.retryable
    assert "still running" in str(caught.value)
    assert impatient.power_state() == PowerState.OFF  # free again once the holder is done


def test_busy_during_the_cool_down_when_not_allowed_to_wait(redis_client, redis_prefix):
    target = BmcTarget("10.4.4.4", 623, "admin", "pw")
    guarded = GuardedDriver(
        get_driver("fake", target), redis_client, min_interval_s=5, max_wait_s=0, key_prefix=redis_prefix
    )
    guarded.power_on()
    with pytest.raises(BmcBusy, match="5 s apart") as caught:
        guarded.power_state()
    assert 4 < caught.value.retry_after_s <= 5
    assert fake_bmc("10.4.4.4", 623).calls == ["power_on"]


def test_a_failing_command_releases_the_lock_and_still_spaces_the_next(redis_client, redis_prefix):
    target = BmcTarget("10.5.5.5", 623, "admin", "pw")
    guarded = GuardedDriver(get_driver("fake", target), redis_client, min_interval_s=0.05, key_prefix=redis_prefix)
    fake_bmc("10.5.5.5", 623).fault = "unreachable"
    with pytest.raises(BmcUnreachable):
        guarded.power_on()
    assert redis_client.get(f"{redis_prefix}lock:10.5.5.5:623") is None
    assert redis_client.pttl(f"{redis_prefix}cooldown:10.5.5.5:623") > 0
    fake_bmc("10.5.5.5", 623).fault = None
    started = time.monotonic()
    guarded.power_on()
    assert time.monotonic() - started >= 0.03
    assert fake_bmc("10.5.5.5", 623).power == PowerState.ON


def test_a_crashed_holder_does_not_wedge_the_bmc(redis_client, redis_prefix):
    target = BmcTarget("10.6.6.6", 623, "admin", "pw", timeout_s=0.05)
    redis_client.set(f"{redis_prefix}lock:10.6.6.6:623", "someone-who-died", px=150)
    guarded = GuardedDriver(get_driver("fake", target), redis_client, min_interval_s=0, key_prefix=redis_prefix)
    started = time.monotonic()
    assert guarded.power_state() == PowerState.OFF
    assert 0.1 < time.monotonic() - started < 0.5


def test_the_observer_sees_each_command_its_time_and_its_error_but_not_the_wait(redis_client, redis_prefix):
    target = BmcTarget("10.8.8.8", 623, "admin", "pw")
    seen = []
    guarded = GuardedDriver(
        Recording(target, hold_s=0.05),
        redis_client,
        min_interval_s=0.2,
        key_prefix=redis_prefix,
        observe=lambda command, seconds, error: seen.append((command, seconds, error)),
    )
    guarded.power_state()
    guarded.power_state()  # waits out the 0.2 s cool-down first: not the BMC's time
    fake_bmc("10.8.8.8", 623).fault = "unreachable"
    with pytest.raises(BmcUnreachable):
        guarded.driver.inner.power_on()  # unguarded: not observed
    with pytest.raises(BmcUnreachable):
        GuardedDriver(
            get_driver("fake", target),
            redis_client,
            min_interval_s=0,
            key_prefix=redis_prefix,
            observe=lambda *call: seen.append(call),
        ).power_on()
    assert [(command, type(error)) for command, _, error in seen] == [
        ("power_state", type(None)),
        ("power_state", type(None)),
        ("power_on", BmcUnreachable),
    ]
    assert all(0.05 <= seconds < 0.15 for _, seconds, _ in seen[:2])
