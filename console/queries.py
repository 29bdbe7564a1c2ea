"""Reads the pages and the REST API share: narrowed querysets, so each costs a fixed number of queries."""

from __future__ import annotations

from installs.models import Install

# Columns the pages read; plan, token_nonce and the token hashes are never among them.
INSTALL_FIELDS = (
    "pk",
    "machine_id",
    "profile_id",
    "batch_id",
    "requested_by_label",
    "purpose",
    "workflow",
    "state",
    "state_changed_at",
    "deadline_at",
    "created_at",
    "started_at",
    "finished_at",
    "progress",
    "current_step",
    "failure_reason",
    "failure_message",
    "cancelled_by_label",
    "agent_seen_at",
    "machine__hostname",
    "machine__status",
    "machine__protected",
    "profile__name",
    "profile__method",
    "batch__name",
    "batch__state",
)


def installs_for_pages():
    return Install.objects.select_related("machine", "profile", "batch").only(*INSTALL_FIELDS)
