"""The audit review page: filters, search, paging, and a CSV export that a spreadsheet cannot run."""

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from audit.models import AuditEntry
from audit.service import Actor, record
from tests.conftest import make_machine, make_rack, make_site, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer_client(client):
    user = make_user("vera")
    user.groups.add(Group.objects.get(name="viewer"))
    client.force_login(user)
    return client


@pytest.fixture
def trail():
    alice, bob = make_user("alice"), make_user("bob")
    east, west = make_site(slug="east"), make_site(slug="west")
    web01 = make_machine(make_rack(east), hostname="web01")
    db01 = make_machine(make_rack(west), hostname="db01")
    record(Actor.for_user(alice), "machine.on", web01, {"ok": True})
    record(Actor.for_user(bob), "machine.off", db01, {"ok": True, "note": "rack maintenance"})
    record(Actor.for_user(alice), "machine.cycle", db01, {"ok": True})
    record(
        Actor.system("anonymous"),
        "auth.login_failed",
        None,
        {"username": "=cmd|' /C calc'!A0"},
        object_label="=cmd|' /C calc'!A0",
    )
    return {"web01": web01, "db01": db01}


def rows(response) -> list[str]:
    html = response.content.decode()
    return [a for a in ("machine.on", "machine.off", "machine.cycle", "auth.login_failed") if f">{a}<" in html]


@pytest.mark.parametrize(
    "query, expected",
    [
        ({}, ["machine.on", "machine.off", "machine.cycle", "auth.login_failed"]),
        ({"actor": "alice"}, ["machine.on", "machine.cycle"]),
        ({"action": "machine.o"}, ["machine.on", "machine.off"]),
        ({"machine": "db01"}, ["machine.off", "machine.cycle"]),
        ({"site": "east"}, ["machine.on"]),
        ({"q": "rack maintenance"}, ["machine.off"]),
        ({"kind": "system"}, ["auth.login_failed"]),
    ],
)
def test_filters_narrow_the_log(viewer_client, trail, query, expected):
    assert rows(viewer_client.get("/audit/", query)) == expected


def test_time_range_and_paging(viewer_client, trail, monkeypatch):
    today = timezone.localdate().isoformat()
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    assert len(rows(viewer_client.get("/audit/", {"since": today}))) == 4
    assert rows(viewer_client.get("/audit/", {"since": tomorrow})) == []
    monkeypatch.setattr("console.views.audit.PAGE_SIZE", 3)
    first = viewer_client.get("/audit/").content.decode()
    assert "page 1 of 2" in first
    second = viewer_client.get("/audit/", {"page": 2})
    assert rows(second) == ["machine.on"]  # newest first: the oldest is on the last page


def test_csv_export_is_the_filtered_view_with_formulas_escaped(viewer_client, trail):
    response = viewer_client.get("/audit/export.csv", {"kind": "system"})
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert table[0][:4] == ["time", "actor_kind", "actor", "action"]
    assert len(table) == 2 and table[1][3] == "auth.login_failed"
    assert table[1][6] == "'=cmd|' /C calc'!A0"  # a spreadsheet shows it as text, never runs it
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in table[1:] for cell in row)


def test_the_log_is_read_only_even_for_admins(client, trail):
    client.force_login(make_user("root", superuser=True))
    entry = AuditEntry.objects.first()
    assert client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_anonymous_users_are_sent_to_log_in(client, trail):
    assert client.get("/audit/").status_code == 302
    assert client.get("/audit/export.csv").status_code == 302
