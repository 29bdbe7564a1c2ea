"""Every time on the pages is a <time> with its UTC instant, and says UTC as text (what a page shows without JS)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.template import Context, Template, TemplateSyntaxError

from access.models import ShellSession


def _render(value, fmt=None) -> str:
    arg = f':"{fmt}"' if fmt else ""
    return Template("{% load local_time %}{{ v|when" + arg + " }}").render(Context({"v": value}))


def test_the_filter_prints_utc_and_the_instant_whatever_zone_the_value_is_in():
    at = datetime(2026, 12, 6, 23, 3, 12, tzinfo=timezone(timedelta(hours=9)))  # 14:03:12 UTC
    assert _render(at) == '<time datetime="2026-12-06T14:03:12Z" data-local="minutes">2026-12-06 14:03 UTC</time>'
    assert _render(at, "seconds").endswith(">2026-12-06 14:03:12 UTC</time>")
    assert _render(at, "time").endswith('data-local="time">14:03:12 UTC</time>')
    assert _render(at, "short").endswith(">12-06 14:03 UTC</time>")
    assert _render(None) == "" and _render("") == ""
    with pytest.raises(TemplateSyntaxError, match="unknown format 'hours'"):
        _render(at, "hours")


def recorded_session(user, started_at: datetime) -> ShellSession:
    """An ended SSH session that started at a known instant (its page prints the start to the second)."""
    from tests.conftest import make_machine

    machine = make_machine(hostname="clock-01")
    return ShellSession.objects.create(
        machine=machine, hostname=machine.hostname, site=machine.rack.site, opened_by=user,
        opened_by_label=user.get_username(), client="browser", principal="root",
        started_at=started_at, ended_at=started_at + timedelta(minutes=5), end_reason="exited",
    )  # fmt: skip


def test_pages_print_their_times_as_utc_time_elements(client, users, scene):
    session = recorded_session(users["admin"], datetime(2026, 12, 6, 14, 3, 12, tzinfo=UTC))
    client.force_login(users["admin"])
    page = client.get(f"/ssh-sessions/{session.pk}/").content.decode()
    assert '<time datetime="2026-12-06T14:03:12Z" data-local="seconds">2026-12-06 14:03:12 UTC</time>' in page
    assert '<time datetime="2026-12-06T14:03:12Z" data-local="minutes">2026-12-06 14:03 UTC</time>' in (
        client.get("/ssh-sessions/").content.decode()
    )
    for url in ("/", "/installs/", f"/installs/{scene.running.pk}/", "/batches/"):
        html = client.get(url).content.decode()
        times = re.findall(r'<time datetime="([^"]+)" data-local="\w+">([^<]+)</time>', html)
        assert times, url
        assert all(iso.endswith("Z") and text.endswith(" UTC") for iso, text in times), url
    assert "js/local-time.js" in client.get("/").content.decode()
