from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models


class ActorKind(models.TextChoices):
    USER = "user"  # a person signed in to the dashboard, admin or API
    AGENT = "agent"  # the in-band agent or installer of one install, authenticated by its token
    SYSTEM = "system"  # the engine, a sweeper or a management command run without a user


class AuditEntry(models.Model):
    """One thing someone or something did. Append-only: never updated, never deleted.

    The database refuses UPDATE and DELETE on this table (triggers, see migration 0002),
    so the guarantee holds for raw SQL and other clients too, not only this model.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    # No database foreign key: deleting a user must not rewrite history (and could not,
    # since the table refuses UPDATE). actor_label keeps the name as it was.
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_label = models.CharField(max_length=255, blank=True)
    details = models.JSONField(default=dict, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.object_label}".strip()

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionDenied("Audit entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionDenied("Audit entries cannot be deleted.")
