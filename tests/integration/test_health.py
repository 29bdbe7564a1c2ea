"""/healthz reports the database, Redis and each site's worker and queue, and fails when a site has no worker."""

import pytest
from rq import SimpleWorker

from provisioner import queues
from tests import redis_claim
from tests.conftest import make_site

pytestmark = pytest.mark.django_db


def test_a_site_without_a_live_worker_makes_health_fail_and_names_it(client):
    redis_claim.flush()
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
    worker = SimpleWorker([queues.site_queue(site.slug)], connection=queues.connection())
    worker.register_birth()
    worker.heartbeat()
    try:
        response = client.get("/healthz")
        assert response.status_code == 200, response.json()
        assert response.json()["sites"]["east"]["workers"] == 1
    finally:
        worker.register_death()
        redis_claim.flush()
