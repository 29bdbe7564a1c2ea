"""The periodic sweep of interactive sessions: ends those whose process died, deletes those past retention.

Recordings are append-only like the audit log: nothing else deletes a session or its cast. A session is
deleted SSH_RECORDING_RETENTION_DAYS after it ended (0 keeps them forever), its recording with it, and the
sweep writes one audit entry saying how many went.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.service import Actor, record

from .models import ShellSession
from .terminal import settle_stale

log = logging.getLogger(__name__)

_BATCH = 500


def sweep() -> dict:
    """The periodic job (installs/periodic.py SCHEDULE)."""
    settled = settle_stale()
    return {"settled": settled, "deleted": purge()}


def purge() -> int:
    days = settings.SSH_RECORDING_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    deleted = 0
    oldest = None
    while True:
        rows = list(
            ShellSession.objects.filter(ended_at__lt=cutoff).order_by("ended_at").values_list("pk", "ended_at")[:_BATCH]
        )
        if not rows:
            break
        ids = [pk for pk, _ in rows]
        oldest = oldest or rows[0][1]
        with transaction.atomic():
            ShellSession.objects.filter(pk__in=ids).delete()
            # The rows go first: a recording without its row is unreachable, a row without its file says so.
            transaction.on_commit(lambda ids=ids: _remove_casts(ids))
        deleted += len(ids)
    if deleted:
        record(
            Actor.system("ssh session retention"),
            "ssh.session.purge",
            None,
            {
                "deleted": deleted,
                "retention_days": days,
                "ended_before": cutoff.isoformat(),
                "oldest": oldest.isoformat(),
            },  # fmt: skip
            object_label=f"{deleted} SSH session(s)",
        )
    return deleted


def _remove_casts(ids: list[int]) -> None:
    for pk in ids:
        path = settings.SSH_RECORDING_DIR / f"session-{pk}.cast"
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("ssh session retention: could not delete %s: %s", path, exc)
