"""Where events happen. Receivers of post_save, so the apps that make the changes need not know of webhooks:
the audit log (every install ending and machine lifecycle move is audited in its own transaction), a batch
saved as finished, and a new alert."""

from django.db.models import Count
from django.db.models.signals import post_save
from django.dispatch import receiver

from audit.models import AuditEntry
from installs.models import Alert, Batch, BatchState

from .events import event_for_audit, publish
from .models import Event


@receiver(post_save, sender=AuditEntry, dispatch_uid="webhooks-audit")
def _audited(sender, instance: AuditEntry, created, **kwargs):
    event = created and event_for_audit(instance.action, instance.details)
    if event:
        data = {
            "object_type": instance.object_type,
            "object_id": instance.object_id,
            "object": instance.object_label,
            "actor": instance.actor_label,
            "details": instance.details,  # already redacted by audit.record
        }
        publish(event, data)


@receiver(post_save, sender=Batch, dispatch_uid="webhooks-batch")
def _batch_saved(sender, instance: Batch, created, update_fields=None, **kwargs):
    if instance.state != BatchState.FINISHED or (update_fields is not None and "state" not in update_fields):
        return
    counts = dict(instance.installs.values_list("state").annotate(n=Count("pk")).order_by())
    publish(Event.BATCH_FINISHED, {"batch": instance.pk, "name": instance.name, "installs": counts})


@receiver(post_save, sender=Alert, dispatch_uid="webhooks-alert")
def _alert_raised(sender, instance: Alert, created, **kwargs):
    if created:
        data = {
            "alert": instance.pk,
            "reason": instance.reason,
            "message": instance.message,
            "install": instance.install_id,
            "machine": instance.machine.hostname if instance.machine_id else None,
        }
        publish(Event.ALERT_RAISED, data)
