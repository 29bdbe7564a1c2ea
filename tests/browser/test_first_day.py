"""What a new technician saw in Debian's Chromium on the first day, checked where only a browser can see it:
blank lines in the log, a glyph the fonts lack, placeholders cut off, tables wider than the window."""

from __future__ import annotations

import pytest

from audit.service import Actor
from installs.events import emit
from installs.models import EventKind, Install, InstallState
from installs.plan import build_plan
from inventory.models import NIC, OSProfile
from inventory.services import set_protected
from inventory.stock import sync_stock_profiles
from tests.browser.conftest import SCREENSHOTS, login
from tests.browser.test_live_install import wait_js
from tests.conftest import make_bmc, make_machine, make_rack, make_site, make_user
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.slow

# The distance between one log line's bottom and the next line's top, in CSS pixels, that is not a gap.
SAME_LINE_PX = 1


def log_gaps(page) -> list[float]:
    """The log's first line's offset from the list's padding edge, then the gap above each following line."""
    return page.evaluate(
        """() => {
        const ol = document.querySelector('[data-log]');
        const items = [...ol.querySelectorAll('li')];
        const top = ol.getBoundingClientRect().top + parseFloat(getComputedStyle(ol).paddingTop);
        const gaps = [items[0].getBoundingClientRect().top - top];
        for (let n = 1; n < items.length; n++)
            gaps.push(items[n].getBoundingClientRect().top - items[n - 1].getBoundingClientRect().bottom);
        return gaps;
    }"""
    )


def cut_placeholders(page) -> list[str]:
    """The inputs whose placeholder is wider than the box that shows it (measured in the input's own font)."""
    return page.evaluate(
        """() => {
        const ctx = document.createElement('canvas').getContext('2d');
        return [...document.querySelectorAll('input[placeholder]')].filter(i => i.offsetParent !== null).filter(i => {
            const s = getComputedStyle(i);
            ctx.font = `${s.fontStyle} ${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
            const room = i.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
            return ctx.measureText(i.placeholder).width > room + 1;
        }).map(i => `${i.name}: ${i.placeholder}`);
    }"""
    )


def scene():
    sync_stock_profiles()
    site = make_site(slug="lab", name="Lab")
    rack = make_rack(site, name="r01", height_u=12)
    web = make_machine(rack, hostname="web01", position_u=1)
    spare = make_machine(rack, hostname="spare01", position_u=3)
    for n, machine in enumerate((web, spare)):
        make_bmc(machine, driver="fake", address="127.0.0.1", port=6230 + n)
    set_protected(web.pk, True, actor=Actor.system("test"), reason="production database")
    user_with_role("technician", "tech")
    return web, spare


def test_the_log_has_no_blank_lines_before_or_between_its_lines(browser, live):
    _, spare = scene()
    profile = OSProfile.objects.get(name="debian-12-preseed")
    install = Install.objects.create(
        machine=spare,
        profile=profile,
        requested_by_label="tech",
        state=InstallState.INSTALLING,
        plan=build_plan(spare, profile),
        token_nonce="firstday",
        boot_token_hash="0" * 64,
    )
    for n in range(3):
        emit(install, EventKind.PROGRESS, f"line {n}")
    page = login(browser, live, "tech")
    page.goto(f"{live.url}/installs/{install.pk}/")
    page.wait_for_selector("[data-live-status].connected")
    for n in range(3, 6):  # live lines, appended by the page's script
        emit(install, EventKind.PROGRESS, f"line {n}")
    wait_js(page, "document.querySelectorAll('[data-log] li').length === 6")
    gaps = log_gaps(page)
    assert all(abs(g) <= SAME_LINE_PX for g in gaps), gaps


def test_placeholders_fit_their_inputs(browser, live):
    scene()
    page = login(browser, live, "tech")
    for path in ("/machines/", "/machines/web01/", "/audit/", "/installs/", "/ssh-sessions/", "/account/tokens/"):
        page.goto(live.url + path)
        assert not cut_placeholders(page), (path, cut_placeholders(page))


def test_protection_is_drawn_and_the_install_dialog_says_it_before_the_hostname_is_typed(browser, live):
    scene()
    page = login(browser, live, "tech")
    # The protected mark is a drawn icon (the ⛨ glyph is an empty box in Debian's fonts), named for screen readers.
    page.goto(f"{live.url}/machines/")
    mark = page.locator("tr:has(a:text-is('web01')) .protected")
    assert mark.locator("svg").bounding_box()["width"] > 8
    assert mark.get_attribute("title") == "protected" and "protected" in mark.text_content()
    assert "⛨" not in page.content()

    # The install dialog says a machine is protected before anyone types its name.
    page.check("input[data-hostname='web01']")
    page.check("input[data-hostname='spare01']")
    page.select_option("#bulk select[name=action]", "install")
    page.select_option("#bulk select[name=profile]", "debian-12-preseed")
    page.click("text=Take action…")
    note = page.locator("#confirm-dialog [data-protected-note]")
    assert note.is_visible() and "web01" in note.inner_text() and "spare01" not in note.inner_text()
    assert page.is_disabled("#confirm-dialog [data-ok]")
    assert page.locator("#confirm-dialog [data-names] li:has-text('web01') svg").count() == 1
    assert page.locator("#confirm-dialog [data-names] li:has-text('spare01') svg").count() == 0
    page.click("#confirm-dialog [data-cancel]")
    page.uncheck("input[data-hostname='web01']")
    page.click("text=Take action…")
    assert note.is_hidden() and page.locator("#confirm-dialog [data-typed-box]").is_visible()
    page.click("#confirm-dialog [data-cancel]")

    page.goto(f"{live.url}/machines/web01/")
    assert page.locator("h1 .protected svg").bounding_box()["width"] > 8
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "first-day-machine.png"), full_page=True)


def test_the_admins_nic_table_fits_a_1280_pixel_window(browser, live):
    web, _ = scene()
    for n in range(3):
        NIC.objects.create(machine=web, name=f"eth{n + 1}", mac=f"aa:bb:cc:00:00:0{n}", ip=f"2001:db8::{n + 10}",
                           prefix_len=64, gateway="2001:db8::1", vlan=100 + n)  # fmt: skip
    make_user("root", superuser=True)
    page = login(browser, live, "root")
    page.goto(f"{live.url}/admin/inventory/machine/{web.pk}/change/")
    page.wait_for_selector("#nics-group table")
    assert page.viewport_size["width"] == 1280
    overflow = page.evaluate(
        "(() => { const t = document.querySelector('#nics-group table');"
        " return t.getBoundingClientRect().right - document.documentElement.clientWidth; })()"
    )
    page.screenshot(path=str(SCREENSHOTS / "first-day-admin-nics.png"), full_page=True)
    assert overflow <= 0, f"the NIC table runs {overflow:.0f} px past the window"
