"""Sending deliveries: signing, one attempt per job, retries with backoff kept in the database.

A delivery's job carries only its id (job arguments sit in Redis in plain text; the secret is read from the
database inside the job). Each attempt is claimed in a short transaction that also pushes next_attempt_at
out by the attempt's timeout, so a second job for the same delivery (a sweep re-queue, a duplicate) finds
nothing due and returns; the HTTP call runs outside any transaction; the result is settled only if the
attempt is still the one claimed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.service import Actor, record
from core import queues
from inventory.crypto import FieldDecryptError

from .models import Delivery, DeliveryState

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Provisioner-Signature"
EVENT_HEADER = "X-Provisioner-Event"
DELIVERY_HEADER = "X-Provisioner-Delivery"
# RQ keeps a delayed job's time in whole seconds and moves it up to a second early: a retry that early is due.
EARLY_S = 1.0


def body_bytes(payload: dict) -> bytes:
    """The exact bytes sent and signed."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff_s(attempts: int) -> float:
    """The pause after the attempts-th failed attempt: doubling from the base, capped."""
    return min(settings.WEBHOOK_RETRY_MAX_S, settings.WEBHOOK_RETRY_BASE_S * 2 ** max(0, attempts - 1))


def enqueue(delivery_id: int, *, attempt: int, delay_s: float = 0) -> None:
    """Queue the delivery's next attempt once the current transaction commits (now or after delay_s)."""

    def run():
        queue = queues.get_queue(queues.WEBHOOKS_QUEUE)
        # The id names the attempt: a sweep re-queueing a lost attempt replaces its job rather than doubling it.
        options = {"job_id": f"webhook-{delivery_id}-{attempt}", "result_ttl": 0, "failure_ttl": 86400}
        if delay_s > 0:
            queue.enqueue_in(timedelta(seconds=delay_s), deliver, delivery_id, **options)
        else:
            queue.enqueue(deliver, delivery_id, **options)

    queues.on_commit(f"webhook delivery {delivery_id}", run)


@dataclass(frozen=True)
class Answer:
    status: int | None = None
    body: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _text(raw: bytes) -> str:
    """A receiver's answer as storable text: PostgreSQL refuses NUL characters in a text column."""
    return raw.decode(errors="replace").replace("\x00", "\ufffd")


def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    cap = settings.WEBHOOK_ANSWER_MAX_CHARS
    try:
        with urllib.request.urlopen(request, timeout=settings.WEBHOOK_TIMEOUT_S) as response:  # noqa: S310
            return Answer(response.status, _text(response.read(cap)))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, _text(exc.read(cap)), f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(error=f"{type(reason).__name__}: {reason}"[:500])


def _claim(delivery_id: int) -> tuple[Delivery, int] | None:
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update(no_key=True, of=("self",)).select_related("endpoint")
        delivery = delivery.filter(pk=delivery_id).first()
        now = timezone.now()
        if delivery is None or delivery.state != DeliveryState.PENDING:
            return None  # delivered, given up, or deleted with its endpoint: a late or duplicate job
        if delivery.next_attempt_at and delivery.next_attempt_at > now + timedelta(seconds=EARLY_S):
            return None  # not due: another job holds this attempt, or the retry is not yet due
        delivery.attempts += 1
        # The lease: a worker killed mid-send leaves the delivery due again after this, for the sweep.
        delivery.next_attempt_at = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_S * 2 + 5)
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        return delivery, delivery.attempts


def deliver(delivery_id: int) -> str:
    """The RQ job: one attempt at sending one delivery."""
    claimed = _claim(delivery_id)
    if claimed is None:
        return "not due"
    delivery, attempt = claimed
    endpoint = delivery.endpoint
    body = body_bytes(delivery.payload)
    try:
        secret = endpoint.get_secret()
    except FieldDecryptError as exc:
        answer = Answer(error=str(exc)[:500])
    else:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "provisioner-webhooks",
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: str(delivery.pk),
        }
        answer = post(endpoint.url, body, headers) if endpoint.active else Answer(error="endpoint inactive")
    return _settle(delivery_id, attempt, answer)


def _settle(delivery_id: int, attempt: int, answer: Answer) -> str:
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update(no_key=True).filter(pk=delivery_id, attempts=attempt).first()
        if delivery is None or delivery.state != DeliveryState.PENDING:
            return "superseded"
        now = timezone.now()
        delivery.last_status, delivery.last_answer, delivery.last_error = answer.status, answer.body, answer.error
        fields = ["last_status", "last_answer", "last_error", "state", "state_changed_at", "next_attempt_at"]
        if answer.ok:
            delivery.state, delivery.next_attempt_at, delivery.delivered_at = DeliveryState.DELIVERED, None, now
            fields.append("delivered_at")
        else:
            retry_at = now + timedelta(seconds=backoff_s(attempt))
            if retry_at > delivery.created_at + timedelta(seconds=settings.WEBHOOK_RETRY_FOR_S):
                delivery.state, delivery.next_attempt_at = DeliveryState.FAILED, None
                log.warning("webhook delivery %s failed for good after %d attempts", delivery_id, attempt)
            else:
                delivery.next_attempt_at = retry_at
                enqueue(delivery_id, attempt=attempt + 1, delay_s=(retry_at - now).total_seconds())
                fields.remove("state")
                fields.remove("state_changed_at")
        if "state" in fields:
            delivery.state_changed_at = now
        delivery.save(update_fields=fields)
        return delivery.state


def sweep() -> int:
    """Periodic: queue again every pending delivery that is due (its job was lost). Returns how many."""
    due = list(
        Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=timezone.now()).values_list(
            "pk", "attempts"
        )
    )
    with transaction.atomic():
        for delivery_id, attempts in due:
            enqueue(delivery_id, attempt=attempts + 1)
    return len(due)


@transaction.atomic
def replay(delivery_id: int, actor: Actor) -> Delivery:
    """Send a delivery's event again, as a new delivery (its own id: receivers that deduplicate take it)."""
    original = Delivery.objects.select_related("endpoint").get(pk=delivery_id)
    copy = Delivery.objects.create(
        endpoint=original.endpoint,
        event=original.event,
        payload=original.payload,
        next_attempt_at=timezone.now(),
        replay_of=original,
    )
    record(actor, "webhook.replay", copy, {"replay_of": original.pk, "endpoint": original.endpoint.name})
    enqueue(copy.pk, attempt=1)
    return copy
