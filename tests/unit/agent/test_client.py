"""Retry timing: capped exponential backoff with jitter, and jittered heartbeat intervals."""

import random
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.agent.client import Backoff, Client, Refused, Rejected, jittered
from tests.unit.agent import servers

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


def test_refusals_are_read_from_the_problem_document():
    server, url = servers.control_plane(servers.Plan(macs=("52:54:00:00:00:99",), bad_request={"heartbeat"}))
    try:
        client = Client(url, servers.TOKEN)
        with pytest.raises(Refused) as refused:
            client.register({"nics": [{"mac": "52:54:00:00:00:01"}]})
        assert (refused.value.reason, refused.value.message) == (
            "WrongMachine",
            "booted on a machine that is not web01",
        )
        client.adopt(servers.AGENT_TOKEN)
        with pytest.raises(Rejected) as rejected:
            client.heartbeat()
        assert (rejected.value.status, rejected.value.detail) == (400, "facts: invalid")
        assert str(rejected.value) == "HTTP 400: facts: invalid"
    finally:
        server.shutdown()
