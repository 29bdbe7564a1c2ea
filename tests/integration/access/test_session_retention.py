"""The periodic sweep of SSH sessions: deletes ended sessions and their recordings past retention, only those,
in one audit entry; ends open sessions whose process stopped beating; and ended rows stay as recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from access import retention
from access.models import SessionAppendOnly, SessionEnd, ShellSession
from audit.models import AuditEntry
from installs.periodic import BY_NAME

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def recordings(settings, tmp_path):
    settings.SSH_RECORDING_DIR = tmp_path
    settings.SSH_RECORDING_RETENTION_DAYS = 30


def session(*, ended_days_ago=None, heartbeat_s_ago=0):
    now = timezone.now()
    row = ShellSession.objects.create(
        hostname="web01",
        opened_by_label="alice",
        client="cli",
        principal="root",
        started_at=now - timedelta(days=ended_days_ago or 0, hours=1),
        heartbeat_at=now - timedelta(seconds=heartbeat_s_ago),
        ended_at=None if ended_days_ago is None else now - timedelta(days=ended_days_ago),
        end_reason="" if ended_days_ago is None else SessionEnd.EXITED,
    )
    row.cast_path.write_text('{"version": 2}\n')
    return row


def test_the_sweep_deletes_only_sessions_past_retention_and_settles_dead_ones(
    settings, django_capture_on_commit_callbacks
):
    old, recent, running = session(ended_days_ago=31), session(ended_days_ago=29), session()
    orphan = session(heartbeat_s_ago=10 * settings.SSH_SESSION_FLUSH_S)

    with django_capture_on_commit_callbacks(execute=True):
        assert retention.sweep() == {"settled": 1, "deleted": 1}

    assert set(ShellSession.objects.values_list("pk", flat=True)) == {recent.pk, running.pk, orphan.pk}
    assert not old.cast_path.exists() and recent.cast_path.exists()
    assert ShellSession.objects.get(pk=orphan.pk).end_reason == SessionEnd.SHUTDOWN
    assert ShellSession.objects.get(pk=running.pk).active
    [entry] = AuditEntry.objects.filter(action="ssh.session.purge")
    assert (entry.details["deleted"], entry.details["retention_days"]) == (1, 30)
    assert BY_NAME["ssh_sessions"].func == "access.retention.sweep"


def test_zero_retention_keeps_everything(settings):
    settings.SSH_RECORDING_RETENTION_DAYS = 0
    kept = session(ended_days_ago=3650)
    assert retention.purge() == 0 and ShellSession.objects.filter(pk=kept.pk).exists()
    assert not AuditEntry.objects.filter(action="ssh.session.purge").exists()


def test_an_ended_session_is_append_only():
    row = ShellSession.objects.get(pk=session(ended_days_ago=1).pk)
    row.transcript = "rewritten"
    with pytest.raises(SessionAppendOnly):
        row.save()
