"""Retry timing: capped exponential backoff with jitter, and jittered heartbeat intervals."""

import random
import subprocess
import sys
from pathlib import Path

from provisioner.agent.client import Backoff, jittered

ROOT = Path(__file__).resolve().parents[3]


def test_backoff_doubles_up_to_the_cap_with_jitter():
    backoff = Backoff(base_s=1, cap_s=8, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(8)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8, 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays[4:])) == 4  # at the cap the delays still differ: a fleet does not retry in step
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_heartbeat_jitter_stays_within_twenty_percent():
    rng = random.Random(5)
    samples = [jittered(30, rng) for _ in range(2000)]
    assert 24 <= min(samples) < 25 and 35 < max(samples) <= 36


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "provisioner.agent", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout.strip() == "provisioner-agent 1"
