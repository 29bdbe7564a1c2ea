"""Times follow the browser's time zone: a known instant shows in Japan time with the zone's name, keeps UTC in its
tooltip, and without JavaScript the page still says UTC; tooltips that hold a time (the machine list's) follow too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.browser.conftest import login
from tests.conftest import make_machine
from tests.integration.ui.conftest import user_with_role
from tests.integration.ui.test_local_time import recorded_session

pytestmark = pytest.mark.slow

AT = datetime(2026, 12, 6, 14, 3, 12, tzinfo=UTC)


def _open_session(browser, live, url, **context_args):
    page = login(browser, live, "boss", **context_args)
    page.goto(live.url + url)
    return page.locator('time[datetime="2026-12-06T14:03:12Z"]')


def test_a_known_time_shows_in_the_browsers_zone(browser, live):
    boss = user_with_role("superuser", "boss")
    url = f"/ssh-sessions/{recorded_session(boss, AT).pk}/"

    tokyo = _open_session(browser, live, url, timezone_id="Asia/Tokyo").first
    assert tokyo.inner_text() == "2026-12-06 23:03:12 GMT+9"
    assert tokyo.get_attribute("title") == "2026-12-06 14:03:12 UTC · Asia/Tokyo"

    paris = _open_session(browser, live, url, timezone_id="Europe/Paris").first
    assert paris.inner_text() == "2026-12-06 15:03:12 GMT+1"

    plain = _open_session(browser, live, url, timezone_id="Asia/Tokyo", java_script_enabled=False).first
    assert plain.inner_text() == "2026-12-06 14:03:12 UTC"


def test_the_machine_lists_tooltips_show_the_browsers_zone(browser, live):
    user_with_role("superuser", "boss")
    make_machine(
        hostname="tipped-01", status="broken", status_reason="DIMM B2", status_changed_at=AT,
        power_state="on", power_state_at=AT,
    )  # fmt: skip
    page = login(browser, live, "boss", timezone_id="Asia/Tokyo")
    page.goto(live.url + "/machines/?q=tipped-01")
    badge = page.locator("tr:has-text('tipped-01') .badge.s-broken")
    assert badge.get_attribute("title") == "DIMM B2 — since 2026-12-06 23:03 GMT+9 (Asia/Tokyo)"
    power = page.locator('tr:has-text("tipped-01") time[datetime="2026-12-06T14:03:12Z"]')
    assert power.get_attribute("title") == "2026-12-06 23:03:12 GMT+9 (Asia/Tokyo)"
    assert power.inner_text().endswith(" ago")

    # A live refresh swaps the rows in again: the new tooltips are rewritten too.
    page.evaluate("""() => {
      document.querySelector('.badge.s-broken').dataset.old = '1';
      const rows = document.querySelector('[data-refresh]');
      htmx.ajax('GET', rows.dataset.refresh, {target: rows, swap: 'innerHTML'});
    }""")
    page.locator(".badge.s-broken:not([data-old])").wait_for()
    assert badge.get_attribute("title") == "DIMM B2 — since 2026-12-06 23:03 GMT+9 (Asia/Tokyo)"

    plain = login(browser, live, "boss", timezone_id="Asia/Tokyo", java_script_enabled=False)
    plain.goto(live.url + "/machines/?q=tipped-01")
    assert plain.locator("tr:has-text('tipped-01') .badge.s-broken").get_attribute("title") == (
        "DIMM B2 — since 2026-12-06 14:03 UTC"
    )
