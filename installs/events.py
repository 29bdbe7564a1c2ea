"""Events: written to the database first, then published to browsers when the transaction commits.

Browsers watching an install join its group; the dashboard group gets every event. A browser
that misses a message can always replay from the database (the event id orders replay).
"""

import logging

from asgiref.sync import async_to_sync
from django.db import transaction

from .models import Event, EventKind

log = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"


def install_group(install_id: int) -> str:
    return f"install-{install_id}"


def emit(install, kind: str, message: str = "", *, step=None, data: dict | None = None) -> Event:
    event = Event.objects.create(install=install, step=step, kind=kind, message=message[:10000], data=data or {})
    transaction.on_commit(lambda: publish(event))
    return event


def publish(event: Event) -> None:
    """Best effort: a browser that misses this replays from the database."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "install.event", "event": event.as_message()}
    try:
        send = async_to_sync(layer.group_send)
        send(install_group(event.install_id), message)
        if event.kind != EventKind.LOG:  # log lines go only to the install's own page
            send(DASHBOARD_GROUP, message)
    except Exception as exc:  # the event is in the database; a Redis hiccup must not fail the step
        log.warning("could not publish event %s: %s", event.pk, exc)
