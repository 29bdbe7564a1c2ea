"""A serial-console session: one SOL activation (or fake console) shared by the browsers that watched it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class EndReason(models.TextChoices):
    # blank while the session runs
    IDLE = "idle", "last viewer left"  # every browser closed; SOL deactivated after the grace period
    ENDED = "ended", "ended by the BMC"  # the BMC deactivated SOL, dropped the session, or stopped answering
    FAILED = "failed", "could not connect"  # SOL never came up (unreachable, rejected, in use elsewhere)
    SHUTDOWN = "shutdown", "web process stopped"  # daphne stopped (or died) with the session open


class ConsoleSession(models.Model):
    machine = models.ForeignKey("inventory.Machine", null=True, on_delete=models.SET_NULL, related_name="+")
    hostname = models.CharField(max_length=255)  # kept when the machine is deleted: the recording stays readable
    driver = models.CharField(max_length=16)
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    opened_by_label = models.CharField(max_length=150)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True)
    end_message = models.CharField(max_length=500, blank=True)
    bytes_out = models.BigIntegerField(default=0)  # from the serial port
    bytes_in = models.BigIntegerField(default=0)  # typed by technicians
    cast_bytes = models.BigIntegerField(default=0)  # the recording's size on disk
    truncated = models.BooleanField(default=False)  # the recording hit CONSOLE_RECORDING_MAX_BYTES

    class Meta:
        ordering = ("-started_at",)
        indexes = [models.Index(fields=["machine", "-started_at"], name="console_session_machine")]

    def __str__(self) -> str:
        return f"console session {self.pk} on {self.hostname}"

    def get_absolute_url(self) -> str:
        return reverse("console-replay", args=[self.pk])

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @property
    def cast_path(self):
        return settings.CONSOLE_DIR / f"session-{self.pk}.cast"
