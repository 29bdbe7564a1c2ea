"""Every time on the pages is a <time> with its UTC instant, and says UTC as text (what a page shows without JS)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.template import Context, Template, TemplateSyntaxError

from access.models import ShellSession
from tests.conftest import make_machine

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"


def _render(value, fmt=None, name="when") -> str:
    arg = f':"{fmt}"' if fmt else ""
    return Template("{% load local_time %}{{ v|" + name + arg + " }}").render(Context({"v": value}))


def test_the_filter_prints_utc_and_the_instant_whatever_zone_the_value_is_in():
    at = datetime(2026, 12, 6, 23, 3, 12, tzinfo=timezone(timedelta(hours=9)))  # 14:03:12 UTC
    assert _render(at) == '<time datetime="2026-12-06T14:03:12Z" data-local="minutes">2026-12-06 14:03 UTC</time>'
    assert _render(at, "seconds").endswith(">2026-12-06 14:03:12 UTC</time>")
    assert _render(at, "time").endswith('data-local="time">14:03:12 UTC</time>')
    assert _render(at, "short").endswith(">12-06 14:03 UTC</time>")
    assert _render(None) == "" and _render("") == ""
    with pytest.raises(TemplateSyntaxError, match="unknown format 'hours'"):
        _render(at, "hours")


def test_tooltip_times_are_utc_text_with_the_instant_beside_them():
    at = datetime(2026, 12, 6, 23, 3, 12, tzinfo=timezone(timedelta(hours=9)))
    assert _render(at, name="when_text") == "2026-12-06 14:03 UTC"
    assert _render(at, "time", name="when_text") == "14:03:12 UTC"
    assert _render(at, name="title_at") == 'data-title-at="2026-12-06T14:03:12Z" data-title-local="minutes"'
    ago = _render(datetime.now(UTC) - timedelta(minutes=5, seconds=3), name="ago")
    assert re.fullmatch(
        r'<time datetime="(\S+Z)" data-title-at="\1" data-title-local="seconds" '
        r'title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">5 min ago</time>',
        ago,
    ), ago
    for name in ("when_text", "title_at", "ago"):
        assert _render(None, name=name) == ""
        with pytest.raises(TemplateSyntaxError, match=f"{name}: unknown format"):
            _render(at, "hours", name=name)


def test_no_template_prints_a_time_with_djangos_own_filters():
    """Django's date and time filters print the server's zone: every time goes through when, when_text or ago."""
    found = [
        f"{path.relative_to(TEMPLATES)}:{n}"
        for path in TEMPLATES.rglob("*.html")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\|(date|time)\b|\{\{ *[\w.]*_at *\}\}", line)
    ]
    assert not found, found


def test_the_machine_lists_tooltips_carry_their_instant(client, users, scene):
    at = datetime(2026, 12, 6, 14, 3, 12, tzinfo=UTC)
    make_machine(
        scene.rack, hostname="tipped-01", position_u=5, status="broken", status_reason="DIMM B2",
        status_changed_at=at, power_state="on", power_state_at=at,
    )  # fmt: skip
    client.force_login(users["viewer"])
    html = client.get("/machines/", {"q": "tipped-01"}).content.decode()
    assert (
        'title="DIMM B2 — since 2026-12-06 14:03 UTC" data-title-at="2026-12-06T14:03:12Z" data-title-local="minutes"'
    ) in html
    assert (
        '<time datetime="2026-12-06T14:03:12Z" data-title-at="2026-12-06T14:03:12Z" data-title-local="seconds" '
        'title="2026-12-06 14:03:12 UTC">'
    ) in html


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
