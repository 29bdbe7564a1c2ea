"""Turning what happened into deliveries.

An event's deliveries are written inside the transaction of the change itself (an outbox): they exist
exactly when the change does, whatever happens to Redis or a worker afterwards. Their jobs are queued
once that transaction commits; the change never waits for a receiver.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction
from django.utils import timezone

from .delivery import enqueue
from .models import Delivery, Endpoint, Event

log = logging.getLogger(__name__)

# The audit actions that are events, and which event each is (the install's by its new state).
INSTALL_ENDINGS = {
    "succeeded": Event.INSTALL_SUCCEEDED,
    "failed": Event.INSTALL_FAILED,
    "cancelled": Event.INSTALL_CANCELLED,
}


def event_for_audit(action: str, details: dict) -> str | None:
    if action == "install.transition":
        return INSTALL_ENDINGS.get(details.get("to"))
    if action == "machine.lifecycle":
        return Event.MACHINE_LIFECYCLE
    return None


def publish(event: str, data: dict) -> list[Delivery]:
    """Record a delivery of ``event`` for every active endpoint that wants it. Call inside the change's
    transaction. A failure here is logged and costs the notification, never the change: it runs in a
    savepoint of its own."""
    try:
        with transaction.atomic():
            # Chosen here rather than with a JSON lookup, which SQLite (the demo's database) lacks; endpoints are few.
            active = Endpoint.objects.filter(active=True).values_list("pk", "events")
            endpoints = [pk for pk, events in active if event in events]
            if not endpoints:
                return []
            now = timezone.now()
            payload = {"event": event, "occurred_at": now.isoformat(), "data": data}
            deliveries = Delivery.objects.bulk_create(
                Delivery(endpoint_id=pk, event=event, payload=payload, next_attempt_at=now) for pk in endpoints
            )
            for delivery in deliveries:
                enqueue(delivery.pk, attempt=1)
            return deliveries
    except DatabaseError as exc:
        log.warning("webhooks: %s not recorded (%s: %s)", event, type(exc).__name__, exc)
        return []
