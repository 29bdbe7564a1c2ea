"""The one way to write the audit log."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import models

from .context import source_ip
from .models import ActorKind, AuditEntry
from .redact import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    kind: str
    label: str
    user: Any = None

    @classmethod
    def for_user(cls, user) -> Actor:
        if user is None or not getattr(user, "is_authenticated", False):
            return cls(ActorKind.SYSTEM, "anonymous")
        return cls(ActorKind.USER, user.get_username(), user)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(ActorKind.SYSTEM, label)

    @classmethod
    def agent(cls, label: str) -> Actor:
        return cls(ActorKind.AGENT, label)


def describe(obj) -> tuple[str, str, str]:
    """(object_type, object_id, object_label) for a model instance, or blanks."""
    if obj is None:
        return "", "", ""
    if isinstance(obj, models.Model):
        return obj._meta.label_lower, str(obj.pk or ""), str(obj)[:255]
    return type(obj).__name__.lower(), "", str(obj)[:255]


def record(
    actor: Actor,
    action: str,
    obj=None,
    details: dict | None = None,
    *,
    ip: str | None = None,
    object_label: str | None = None,
) -> AuditEntry:
    """Write one audit entry. Call it inside the transaction of the change it describes,
    so the entry exists exactly when the change does."""
    object_type, object_id, label = describe(obj)
    entry = AuditEntry.objects.create(
        actor_kind=actor.kind,
        actor_user=actor.user if actor.kind == ActorKind.USER else None,
        actor_label=actor.label[:150],
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_label=object_label if object_label is not None else label,
        details=redact(details or {}),
        source_ip=ip if ip is not None else source_ip.get(),
    )
    log.info("audit %s %s %s", actor.label, action, entry.object_label)
    return entry
