"""The site overview in a browser: every rack side by side, wrapping with the window; a machine that fails
while the page is open turns red with its mark and words, without a reload; hover and keyboard focus show its
hardware; a click or Enter opens the machine. Saves light and dark screenshots."""

from __future__ import annotations

import pytest

from installs import engine
from installs.models import Install, InstallState
from installs.plan import build_plan
from inventory.models import MachineStatus, OSProfile, PowerState
from inventory.stock import sync_stock_profiles
from tests.browser.conftest import SCREENSHOTS, login
from tests.browser.test_live_install import wait_for
from tests.conftest import make_bmc, make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.slow


def build_hall():
    """Six 12U racks; in r01 a machine mid-install (the one that will fail) and a commissioned one."""
    sync_stock_profiles()
    site = make_site(slug="hall", name="Hall")
    racks = [make_rack(site, name=f"r0{n}", height_u=12) for n in range(1, 7)]
    statuses = [MachineStatus.READY, MachineStatus.DEPLOYED, MachineStatus.NEW, MachineStatus.MAINTENANCE]
    for r, rack in enumerate(racks):
        for u in range(3, 12, 2):
            make_machine(rack, hostname=f"n{r + 1}-{u:02d}", position_u=u, status=statuses[(r + u) % 4])
    target = make_machine(
        racks[0], hostname="target-01", position_u=1, status=MachineStatus.DEPLOYING, power_state=PowerState.ON
    )
    make_bmc(target, driver="fake", address="127.0.9.1")
    install = Install.objects.create(
        machine=target,
        profile=OSProfile.objects.get(name="debian-12-preseed"),
        requested_by_label="test",
        state=InstallState.INSTALLING,
        plan=build_plan(target, OSProfile.objects.get(name="debian-12-preseed")),
        token_nonce="n" * 32,
        boot_token_hash="b" * 64,
    )
    spec = make_machine(
        racks[1],
        hostname="spec-01",
        position_u=1,
        status=MachineStatus.READY,
        cpu_cores=48,
        memory_bytes=384 * 2**30,
        disk_count=3,
        nvme_count=1,
        hdd_count=2,
        nic_max_speed_mbps=25000,
    )
    # Two half-depth boxes back to back in r06's U1: that rack is drawn from the rear as well.
    make_machine(racks[5], hostname="half-front", position_u=1, depth="front")
    make_machine(racks[5], hostname="half-rear", position_u=1, depth="rear")
    return site, install, spec


def box(host: str) -> str:
    return f'svg.elevation a[data-machine="{host}"]'


def test_the_site_overview_updates_live_and_shows_facts(browser, live):
    site, install, spec = build_hall()
    user_with_role("technician", "tech")
    page = login(browser, live, "tech")
    csp_errors = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)

    page.goto(f"{live.url}/sites/{site.slug}/")
    page.wait_for_selector("[data-live-status].connected")
    page.evaluate("window.__sameDocument = true")

    # Every rack, side by side, wrapping into rows with the window.
    tops = page.eval_on_selector_all("figure.rack", "els => els.map(e => Math.round(e.getBoundingClientRect().top))")
    assert len(tops) == 6
    assert 1 < len(set(tops)) < 6 and tops.count(tops[0]) >= 3, tops
    rear = page.locator('svg[aria-label="Rear of rack hall/r06"]')
    assert rear.locator('a[data-machine="half-rear"]').is_visible()
    assert rear.locator('a[data-machine="half-front"]').count() == 0 and "n6-03 (back)" in rear.text_content()
    assert page.locator('svg[aria-label="Front of rack hall/r06"] a[data-machine="half-rear"]').count() == 0
    assert page.locator('svg[aria-label^="Rear of rack"]').count() == 1
    assert page.get_attribute(box("target-01"), "data-state") == "installing"
    assert "installing · on" in page.text_content(box("target-01") + " .mstate")

    # The install fails while the technician watches: the box turns to failed, marked, without a reload.
    engine.transition(
        install.pk, to=InstallState.FAILED, expect=InstallState.INSTALLING, reason="InstallerFailed", message="no disk"
    )
    page.wait_for_selector(box("target-01") + '[data-state="failed"] .mfail', timeout=15000)
    assert "failed · on" in page.text_content(box("target-01") + " .mstate")
    assert page.evaluate("window.__sameDocument") is True

    # Hover shows the machine's hardware; keyboard focus too, and Tab walks on to the next machine.
    page.hover(box("spec-01"))
    tip = page.locator("#rack-tip")
    tip.wait_for(state="visible")
    assert (
        "spec-01" in tip.inner_text() and "48 cores · 384 GiB · 3 disks (1 NVMe, 2 HDD) · 25 Gb/s" in tip.inner_text()
    )
    page.mouse.move(0, 0)
    page.locator(box("target-01")).focus()
    assert tip.is_visible() and "hardware not recorded yet" in tip.inner_text() and "failed" in tip.inner_text()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.locator(box("spec-01")).focus()
        page.screenshot(path=str(SCREENSHOTS / f"site-overview-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")

    # From a rack's heading, Tab reaches its machines, one after another.
    page.focus('figure.rack h2 a:text("hall/r03")')
    page.keyboard.press("Tab")
    first = page.evaluate("document.activeElement.dataset.machine")
    page.keyboard.press("Tab")
    second = page.evaluate("document.activeElement.dataset.machine")
    assert first and second and first != second and {first[:2], second[:2]} == {"n3"}
    assert second in tip.inner_text()
    page.keyboard.press("Escape")
    assert not tip.is_visible()

    # Enter opens the focused machine; a click opens the one clicked.
    page.locator(box("spec-01")).focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live.url}/machines/spec-01/")
    page.go_back()
    page.click(box("target-01"))
    page.wait_for_url(f"{live.url}/machines/target-01/")
    assert csp_errors == []


def test_the_overview_keeps_keyboard_focus_through_a_live_refresh(browser, live):
    site, install, _ = build_hall()
    user_with_role("viewer", "viewer")
    page = login(browser, live, "viewer")
    page.goto(f"{live.url}/sites/{site.slug}/")
    page.wait_for_selector("[data-live-status].connected")
    page.locator(box("n2-03")).focus()
    engine.transition(install.pk, to=InstallState.CANCELLED, expect=InstallState.INSTALLING, reason="", message="")
    page.wait_for_selector(box("target-01") + ':not([data-state="installing"])', timeout=15000)
    wait_for(lambda: page.evaluate("document.activeElement.dataset.machine") == "n2-03", what="focus back")
    assert page.locator("#rack-tip").is_visible()
