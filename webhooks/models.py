"""Webhook endpoints and their deliveries. The delivery row is the truth: its job carries only its id."""

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models

from inventory.crypto import EncryptedTextField


class Event(models.TextChoices):
    INSTALL_SUCCEEDED = "install.succeeded"  # an install ended with the machine running its new OS
    INSTALL_FAILED = "install.failed"  # an install stopped on an error
    INSTALL_CANCELLED = "install.cancelled"  # a person cancelled an install
    BATCH_FINISHED = "batch.finished"  # every install of a batch has ended
    MACHINE_LIFECYCLE = "machine.lifecycle"  # a machine moved between lifecycle states (new, ready, deployed…)
    ALERT_RAISED = "alert.raised"  # a failure a person should look at (install or machine)


class DeliveryState(models.TextChoices):
    PENDING = "pending"  # not yet answered with a 2xx; next_attempt_at says when it is tried (again)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # no 2xx within WEBHOOK_RETRY_FOR_S; only a replay sends it again


def validate_webhook_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Enter an http:// or https:// URL with a host name.", code="invalid")


def validate_events(value) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Choose at least one event.", code="invalid")
    unknown = sorted({str(v) for v in value} - set(Event.values))
    if unknown:
        raise ValidationError(f"Unknown events: {', '.join(unknown)}.", code="invalid")


class Endpoint(models.Model):
    """A receiver of signed event notifications, registered by an admin."""

    audit_secret_fields = {"secret_ciphertext": "secret"}

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500, validators=[validate_webhook_url])
    events = models.JSONField(default=list, validators=[validate_events], help_text="Event names it receives.")
    secret_ciphertext = EncryptedTextField(describe=lambda endpoint: f"webhook secret of {endpoint.name}")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Delivery(models.Model):
    """One event sent (or to be sent) to one endpoint, with the last answer."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32, choices=Event.choices)
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_answer = models.TextField(blank=True)  # capped at WEBHOOK_ANSWER_MAX_CHARS
    last_error = models.CharField(max_length=500, blank=True)
    replay_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    state_changed_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due_idx",
                condition=models.Q(state="pending"),
            )
        ]

    def __str__(self):
        return f"delivery {self.pk}: {self.event} to {self.endpoint_id}"
