"""Alerts: failures a person should look at, on the dashboard and by e-mail when configured."""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from audit.service import Actor, record

from .events import emit
from .models import Alert, EventKind

log = logging.getLogger(__name__)


def raise_alert(install, reason: str, message: str) -> Alert:
    alert = Alert.objects.create(install=install, machine_id=install.machine_id, reason=reason, message=message)
    emit(install, EventKind.ALERT, f"{install.machine.hostname}: {message}", data={"alert": alert.pk, "reason": reason})
    if settings.ALERT_EMAILS:
        subject = f"[provisioner] install of {install.machine.hostname} failed: {reason}"
        body = f"{message}\n\nInstall {install.pk}, profile {install.plan.profile.name}."
        transaction.on_commit(lambda: _mail(subject, body))
    return alert


def _mail(subject: str, body: str) -> None:
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, settings.ALERT_EMAILS)
    except Exception as exc:  # the alert is on the dashboard either way
        log.warning("could not e-mail alert %r: %s", subject, exc)


@transaction.atomic
def acknowledge(alert_id: int, actor: Actor) -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert_id)
    if alert.acknowledged_at is None:
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by_label = actor.label
        alert.save(update_fields=["acknowledged_at", "acknowledged_by_label"])
        record(actor, "alert.acknowledge", alert, {"reason": alert.reason})
    return alert
