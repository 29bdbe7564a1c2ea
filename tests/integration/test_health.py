"""/healthz reports the database, Redis, the scheduler, each periodic job and each site's worker and
queue, and fails (503) naming the part at fault."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rq.cron import CronScheduler

from core import queues
from installs.models import PeriodicRun
from installs.periodic import SCHEDULE
from tests import redis_claim
from tests.conftest import make_site

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_db():
    redis_claim.flush()
    yield queues.connection()
    redis_claim.flush()


@pytest.fixture
def scheduler(redis_db):
    """A scheduler registered and beating, as `manage.py scheduler` is."""
    cron = CronScheduler(connection=redis_db, name="provisioner-scheduler:test")
    cron.register_birth()
    cron.heartbeat()
    return cron


def ran(name: str, seconds_ago: float) -> None:
    PeriodicRun.objects.update_or_create(
        name=name, defaults={"runs": 7, "last_finished_at": timezone.now() - timedelta(seconds=seconds_ago)}
    )


def test_a_site_without_a_live_worker_makes_health_fail_and_names_it(client, scheduler):
    for job in SCHEDULE:
        ran(job.name, 1)
    site = make_site(slug="east")
    queues.site_queue("east").enqueue("builtins.print", "x")
    response = client.get("/healthz")
    assert response.status_code == 503
    report = response.json()
    assert report["sites"]["east"] == {
        "queue": "site-east",
        "queue_depth": 1,
        "workers": 0,
        "last_heartbeat_s": None,
        "ok": False,
    }
    worker = queues.worker([queues.site_queue_name(site.slug)])
    worker.register_birth()
    worker.heartbeat()
    try:
        response = client.get("/healthz")
        assert response.status_code == 200, response.json()
        assert response.json()["sites"]["east"]["workers"] == 1
    finally:
        worker.register_death()


def test_a_periodic_job_that_stopped_running_makes_health_fail(client, scheduler, settings):
    settings.SWEEP_INTERVAL_S = 15
    settings.PERIODIC_GRACE_S = 30
    for job in SCHEDULE:
        ran(job.name, 1)
    assert client.get("/healthz").status_code == 200
    ran("sweep", 2 * 15 + 30 + 5)  # two periods and the grace have passed since it last ran
    response = client.get("/healthz")
    assert response.status_code == 503
    sweep = response.json()["periodic"]["sweep"]
    assert sweep["overdue"] is True and sweep["every_s"] == 15 and sweep["runs"] == 7
    assert response.json()["periodic"]["power_sync"]["overdue"] is False


def test_a_periodic_job_that_never_ran_is_overdue(client, scheduler):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert {name: job["overdue"] for name, job in response.json()["periodic"].items()} == {
        job.name: True for job in SCHEDULE
    }


def test_no_scheduler_running_makes_health_fail(client, redis_db):
    for job in SCHEDULE:
        ran(job.name, 1)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["scheduler"] == {"running": 0, "last_heartbeat_s": None, "ok": False}
