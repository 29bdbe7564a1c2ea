"""Signed deliveries to a real receiver: signature, retries until a receiver comes back, timeouts, giving up."""

import json
import logging
import time

import pytest
from django.db import transaction
from rq.job import Job

from audit.service import Actor
from core import queues
from installs.periodic import BY_NAME, Scheduler
from inventory import lifecycle
from inventory.models import Machine
from tests.conftest import make_machine
from webhooks.delivery import sweep
from webhooks.models import Delivery, DeliveryState

from .conftest import SECRET, make_endpoint, run_jobs
from .receiver import Receiver, free_port, verify


def break_machine(machine, reason="PSU failed"):
    """A real event: a person marks a machine broken (machine.lifecycle)."""
    with transaction.atomic():
        locked = Machine.objects.select_for_update().get(pk=machine.pk)
        lifecycle.mark(locked, "mark-broken", Actor.system("test"), reason=reason)


def test_a_delivery_is_signed_and_verifiable_with_the_documented_recipe(receiver):
    endpoint = make_endpoint(receiver.url)
    machine = make_machine()
    break_machine(machine)

    run_jobs(lambda: receiver.received)

    (headers, body), = receiver.received
    assert verify(SECRET, headers["X-Provisioner-Signature"], body)
    assert not verify("another-secret-of-some-length", headers["X-Provisioner-Signature"], body)
    assert not verify(SECRET, headers["X-Provisioner-Signature"], body + b" ")
    assert headers["X-Provisioner-Event"] == "machine.lifecycle"
    payload = json.loads(body)
    assert payload["event"] == "machine.lifecycle"
    assert payload["data"]["object"] == machine.hostname
    assert payload["data"]["details"]["to"] == "broken"
    delivery = Delivery.objects.get(endpoint=endpoint)
    assert headers["X-Provisioner-Delivery"] == str(delivery.pk)
    assert (delivery.state, delivery.attempts, delivery.last_status) == (DeliveryState.DELIVERED, 1, 200)
    assert delivery.last_answer.startswith("ok ok") and len(delivery.last_answer) == 2000  # capped


def test_a_receiver_down_for_a_while_then_up_gets_every_event_once(caplog):
    caplog.set_level(logging.DEBUG)
    port = free_port()
    endpoint = make_endpoint(f"http://127.0.0.1:{port}/hook")
    other = make_endpoint(f"http://127.0.0.1:{port}/other", events=["install.failed"])
    machines = [make_machine() for _ in range(3)]
    for machine in machines:
        break_machine(machine)
    deliveries = list(Delivery.objects.filter(endpoint=endpoint).order_by("pk"))
    assert len(deliveries) == 3 and not Delivery.objects.filter(endpoint=other).exists()

    # Down: every delivery is tried, refused, and scheduled again with a job that names only its id.
    run_jobs(lambda: all(d.attempts >= 2 for d in Delivery.objects.filter(endpoint=endpoint)))
    for delivery in Delivery.objects.filter(endpoint=endpoint):
        assert delivery.state == DeliveryState.PENDING and delivery.last_status is None
        assert "ConnectionRefusedError" in delivery.last_error
    queue = queues.get_queue(queues.WEBHOOKS_QUEUE)
    job_ids = queue.scheduled_job_registry.get_job_ids() + queue.job_ids
    assert job_ids
    for job in Job.fetch_many(job_ids, connection=queues.connection()):
        assert job.args == (int(job.id.split("-")[1]),) and not job.kwargs

    receiver = Receiver(port)
    try:
        run_jobs(lambda: not Delivery.objects.filter(endpoint=endpoint, state=DeliveryState.PENDING).exists())
        run_jobs()  # anything still queued (a duplicate, a late retry) must not send again
        assert sorted(receiver.delivery_ids()) == sorted(str(d.pk) for d in deliveries)
        for headers, body in receiver.received:
            assert verify(SECRET, headers["X-Provisioner-Signature"], body)
    finally:
        receiver.stop()
    assert all(d.attempts >= 3 for d in Delivery.objects.filter(endpoint=endpoint))
    assert SECRET not in caplog.text


def test_a_slow_receiver_delays_neither_the_event_nor_other_work_and_is_retried(settings):
    slow = Receiver(delay_s=2.0)
    try:
        make_endpoint(slow.url)
        started = time.monotonic()
        break_machine(make_machine())
        assert time.monotonic() - started < 0.5  # the event's transaction never waits for a receiver
        delivery = Delivery.objects.get()

        started = time.monotonic()
        run_jobs(lambda: Delivery.objects.get().attempts >= 1 and Delivery.objects.get().last_error)
        assert time.monotonic() - started < settings.WEBHOOK_TIMEOUT_S + 1.0
        delivery.refresh_from_db()
        assert delivery.state == DeliveryState.PENDING and "timed out" in delivery.last_error
        assert delivery.next_attempt_at is not None

        slow.delay_s = 0
        run_jobs(lambda: Delivery.objects.get().state == DeliveryState.DELIVERED)
        # The timed-out attempt reached the receiver too: the id is what lets it drop the second copy.
        assert set(slow.delivery_ids()) == {str(delivery.pk)}
    finally:
        slow.stop()


def test_a_receiver_that_keeps_failing_is_given_up_after_the_retry_window(receiver, settings):
    settings.WEBHOOK_RETRY_FOR_S = 0.4
    receiver.status = 503
    make_endpoint(receiver.url)
    break_machine(make_machine())

    run_jobs(lambda: Delivery.objects.get().state == DeliveryState.FAILED)
    delivery = Delivery.objects.get()
    assert delivery.last_status == 503 and delivery.last_error == "HTTP 503"
    assert delivery.attempts == len(receiver.received) >= 2
    assert delivery.next_attempt_at is None
    run_jobs()
    assert delivery.attempts == len(receiver.received)  # nothing more is sent


def test_an_event_rolled_back_sends_nothing(receiver):
    make_endpoint(receiver.url)
    machine = make_machine()
    with pytest.raises(RuntimeError), transaction.atomic():
        locked = Machine.objects.select_for_update().get(pk=machine.pk)
        lifecycle.mark(locked, "mark-broken", Actor.system("test"), reason="x")
        raise RuntimeError("the change fails after the event")
    assert not Delivery.objects.exists()
    assert queues.get_queue(queues.WEBHOOKS_QUEUE).count == 0


def test_the_sweep_queues_again_a_due_delivery_whose_job_was_lost(receiver):
    make_endpoint(receiver.url)
    break_machine(make_machine())
    queues.get_queue(queues.WEBHOOKS_QUEUE).empty()  # Redis lost the job
    assert sweep() == 1
    run_jobs()
    assert Delivery.objects.get().state == DeliveryState.DELIVERED and len(receiver.received) == 1


def test_an_answer_the_database_cannot_store_as_sent_is_kept_readable(receiver):
    receiver.status, receiver.answer = 500, b"bad\x00answer \xff"
    make_endpoint(receiver.url)
    break_machine(make_machine())
    run_jobs(lambda: Delivery.objects.get().attempts >= 1 and Delivery.objects.get().last_status)
    delivery = Delivery.objects.get()
    assert delivery.last_status == 500 and delivery.last_answer == "bad\ufffdanswer \ufffd"
    assert delivery.state == DeliveryState.PENDING  # and retried, like any failure


def test_the_deployed_scheduler_moves_retries_onto_the_webhooks_queue_and_sweeps_lost_ones():
    """The tests' worker moves its own delayed jobs; in production `manage.py scheduler` must, or no retry runs."""
    assert queues.WEBHOOKS_QUEUE in Scheduler(queues.connection()).site_queue_names()
    assert BY_NAME["webhooks"].func == "webhooks.delivery.sweep"
