"""Alerts: failures a person should look at, on the dashboard and by e-mail when configured."""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.service import Actor, record
from inventory.models import Machine

from .events import emit
from .models import Alert, EventKind

log = logging.getLogger(__name__)


def raise_alert(install, reason: str, message: str) -> Alert:
    alert = Alert.objects.create(install=install, machine_id=install.machine_id, reason=reason, message=message)
    # The failure's sentence is in the log already (the failed step's line, or the state line): this line
    # says only that people were alerted.
    emit(
        install,
        EventKind.ALERT,
        f"Alert raised for {install.machine.hostname}: {reason}",
        data={"alert": alert.pk, "reason": reason},
    )
    if settings.ALERT_EMAILS:
        subject = f"[provisioner] install of {install.machine.hostname} failed: {reason}"
        body = f"{message}\n\nInstall {install.pk}, profile {install.plan.profile.name}."
        transaction.on_commit(lambda: _mail(subject, body))
    return alert


def raise_machine_alert(machine: Machine | int, reason: str, message: str) -> Alert | None:
    """An alert about a machine itself (no install): its BMC stopped answering, its power changed outside
    provisioner, its event log has a critical entry. At most one stays open per machine and reason (a named
    constraint), so a problem seen on every periodic read alerts, and e-mails, once until acknowledged.
    Returns the new alert, or None when one was open already."""
    machine_id = machine if isinstance(machine, int) else machine.pk
    open_alerts = Alert.objects.filter(machine_id=machine_id, reason=reason, install__isnull=True,
                                       acknowledged_at__isnull=True)  # fmt: skip
    if open_alerts.exists():
        return None
    try:
        with transaction.atomic():
            alert = Alert.objects.create(machine_id=machine_id, reason=reason, message=message)
    except IntegrityError:  # raised by another worker in the meantime
        return None
    if settings.ALERT_EMAILS:
        hostname = Machine.objects.filter(pk=machine_id).values_list("hostname", flat=True).first() or machine_id
        subject = f"[provisioner] {hostname}: {reason}"
        transaction.on_commit(lambda: _mail(subject, message))
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
