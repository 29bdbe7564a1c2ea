"""Webhook fixtures: real PostgreSQL with committed transactions (so on_commit fires), the real webhooks queue
run by an in-process RQ worker whose scheduler moves due retries, and a real HTTP receiver on loopback."""

import time

import pytest

from core import queues
from tests import redis_claim
from tests.integration.installs.conftest import BurstWorker
from webhooks.models import Endpoint

from .receiver import Receiver

SECRET = "whsec-0123456789abcdef-do-not-leak"


@pytest.fixture(autouse=True)
def _webhook_settings(settings, transactional_db):
    settings.WEBHOOK_TIMEOUT_S = 0.5
    settings.WEBHOOK_RETRY_BASE_S = 0.05
    settings.WEBHOOK_RETRY_MAX_S = 0.2
    settings.WEBHOOK_RETRY_FOR_S = 60
    redis_claim.flush()
    yield
    redis_claim.flush()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


def make_endpoint(url: str, events=("machine.lifecycle",), *, secret=SECRET, **kw) -> Endpoint:
    endpoint = Endpoint(name=kw.pop("name", f"hook-{time.monotonic_ns()}"), url=url, events=list(events), **kw)
    endpoint.set_secret(secret)
    endpoint.save()
    return endpoint


def run_jobs(until=None, *, timeout_s: float = 10.0) -> None:
    """Run the webhooks queue (moving delayed retries when due, as the scheduler does) until ``until()``
    holds, or until nothing is queued or scheduled when no condition is given."""
    queue = queues.get_queue(queues.WEBHOOKS_QUEUE)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        BurstWorker([queue], connection=queues.connection()).work(burst=True, with_scheduler=True)
        idle = not queue.count and not queue.scheduled_job_registry.count
        if until() if until is not None else idle:
            return
        time.sleep(0.05)
    raise AssertionError("the webhook jobs did not get there in time")
