"""The events a receiver gets from the install path: an install cancelled or failed, its batch finished, the
alert of a failure. Real installs in the lab's queued state, ended by the engine's own service functions."""

import json

import pytest
from django.db import transaction

from audit.service import Actor
from installs import engine
from tests.integration.installs.conftest import Lab
from webhooks.events import event_for_audit
from webhooks.models import Delivery

from .conftest import make_endpoint, run_jobs

INSTALL_EVENTS = ["install.succeeded", "install.failed", "install.cancelled", "batch.finished", "alert.raised"]


@pytest.fixture
def lab(tmp_path):
    return Lab(tmp_path)


def received(receiver) -> list[tuple[str, dict]]:
    return [(headers["X-Provisioner-Event"], json.loads(body)["data"]) for headers, body in receiver.received]


def test_cancelling_and_failing_installs_reach_the_receiver_with_their_batch_and_alert(lab, receiver):
    make_endpoint(receiver.url, INSTALL_EVENTS)
    cancelled, failed = lab.install([lab.machine(), lab.machine()])
    engine.cancel(cancelled.pk, actor=Actor.system("test"), why="wrong rack")
    with transaction.atomic():
        engine.fail(engine.lock(failed.pk), "DiskMissing", "no disk found")

    run_jobs(lambda: len(receiver.received) >= 4)
    run_jobs()
    events = received(receiver)
    assert sorted(e for e, _ in events) == ["alert.raised", "batch.finished", "install.cancelled", "install.failed"]
    data = dict(events)
    assert data["install.cancelled"]["object_id"] == str(cancelled.pk)
    assert data["install.failed"]["details"]["reason"] == "DiskMissing"
    assert data["alert.raised"] == {
        "alert": failed.alerts.get().pk,
        "reason": "DiskMissing",
        "message": "no disk found",
        "install": failed.pk,
        "machine": failed.machine.hostname,
    }
    assert data["batch.finished"]["installs"] == {"cancelled": 1, "failed": 1}
    assert Delivery.objects.filter(state="delivered").count() == 4


def test_only_install_endings_and_lifecycle_moves_are_events():
    assert event_for_audit("install.transition", {"from": "booting", "to": "failed"}) == "install.failed"
    assert event_for_audit("install.transition", {"from": "queued", "to": "booting"}) is None
    assert event_for_audit("machine.lifecycle", {"from": "new", "to": "broken"}) == "machine.lifecycle"
    assert event_for_audit("auth.login", {}) is None
