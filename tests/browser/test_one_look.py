"""The pages and the Django admin are one product to the eye: the same header in the same colours, light and
dark, following the system and the pages' theme switch; and the confirm dialog works from the keyboard alone."""

from __future__ import annotations

import pytest

from tests.browser.conftest import SCREENSHOTS, login
from tests.conftest import make_bmc, make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.slow

HEADER_STYLE = """() => {
  const s = getComputedStyle(document.querySelector('header.top'));
  const brand = getComputedStyle(document.querySelector('header.top .brand'));
  const link = getComputedStyle(document.querySelector('header.top nav a:not([aria-current])'));
  return {bg: s.backgroundColor, color: s.color, font: s.fontFamily, size: s.fontSize, height: s.height,
          brand: brand.color, link: link.color, body: getComputedStyle(document.body).backgroundColor};
}"""

OUTLINE = (
    "(() => { const s = getComputedStyle(document.activeElement); return s.outlineStyle + ' ' + s.outlineWidth; })()"
)


def _rack_with_machines():
    rack = make_rack(make_site(slug="lab", name="Lab"), name="r01", height_u=12)
    for i in (1, 2):
        make_bmc(make_machine(rack, hostname=f"web-0{i}", position_u=i), address=f"10.0.0.{i}")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_admin_wears_the_pages_header_and_colours(browser, live, scheme):
    _rack_with_machines()
    user_with_role("superuser", "boss")
    page = login(browser, live, "boss", color_scheme=scheme)
    csp_errors = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{live.url}/machines/")
    pages = page.evaluate(HEADER_STYLE)
    page.screenshot(path=str(SCREENSHOTS / f"one-look-machines-{scheme}.png"))
    page.goto(f"{live.url}/admin/inventory/machine/")
    page.screenshot(path=str(SCREENSHOTS / f"one-look-admin-changelist-{scheme}.png"))
    page.wait_for_selector("#result_list")
    admin = page.evaluate(HEADER_STYLE)

    assert admin == pages
    dark = scheme == "dark"
    assert (pages["bg"] == "rgb(1, 4, 9)") is dark and (pages["body"] == "rgb(13, 17, 23)") is dark
    assert page.locator("header.top nav a[aria-current=page]").inner_text() == "Admin"
    assert page.locator("header.top form.logout").inner_text().startswith("boss")
    # The admin's own tables and buttons are drawn from the pages' variables too.
    table_bg = page.evaluate("getComputedStyle(document.querySelector('#result_list')).backgroundColor")
    assert table_bg == ("rgb(22, 27, 34)" if dark else "rgb(255, 255, 255)")  # the pages' --panel

    # A change form stays usable at 1280x800: its fields and save button are on screen without scrolling sideways.
    page.goto(f"{live.url}/admin/inventory/machine/")
    page.click("#result_list a:text('web-01')")
    page.wait_for_selector("input[name=hostname]")
    page.screenshot(path=str(SCREENSHOTS / f"one-look-admin-change-{scheme}.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.locator("input[name=hostname]").bounding_box()["x"] + 50 < 1280
    assert not csp_errors


def test_the_pages_switch_sets_the_admins_theme_too(browser, live):
    user_with_role("superuser", "boss")
    page = login(browser, live, "boss", color_scheme="light")
    page.click("header.top [data-theme-switch]")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.goto(f"{live.url}/admin/")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.evaluate(HEADER_STYLE)["body"] == "rgb(13, 17, 23)"
    assert page.locator("header.top [data-theme-switch]").inner_text() == "☀ Light"
    page.click("header.top [data-theme-switch]")
    assert page.evaluate(HEADER_STYLE)["body"] == "rgb(246, 247, 249)"
    page.goto(f"{live.url}/admin/")
    # Keyboard focus is as visible in the admin as on the pages: its skip link, then the shared header's brand.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "brand" and page.evaluate(OUTLINE) == "solid 2px"
    # The admin's own inputs follow at once: no second toggle to keep in step.
    page.goto(f"{live.url}/admin/inventory/machine/add/")
    assert page.evaluate("getComputedStyle(document.querySelector('input[name=hostname]')).color") == "rgb(29, 35, 48)"


def _focused(page) -> str:
    return page.evaluate("""() => { const a = document.activeElement;
      if (!a || a === document.body) return 'BODY';
      return (a.closest('dialog[open]') ? 'dialog:' : '') + a.tagName + ':' + (a.name || a.textContent.trim()); }""")


def test_the_confirm_dialog_by_keyboard(browser, live):
    _rack_with_machines()
    user_with_role("technician", "tech")
    page = login(browser, live, "tech")
    page.goto(f"{live.url}/machines/")
    # Tab from the top of the page reaches a machine's checkbox, then the action button.
    for _ in range(60):
        page.keyboard.press("Tab")
        if _focused(page) == "INPUT:machine":
            break
    assert _focused(page) == "INPUT:machine"
    page.keyboard.press("Space")
    assert page.locator("input[name=machine]:checked").count() == 1
    for _ in range(60):
        page.keyboard.press("Tab")
        if _focused(page) == "BUTTON:Take action…":
            break
    assert _focused(page) == "BUTTON:Take action…"
    assert page.evaluate(OUTLINE) == "solid 2px"
    page.keyboard.press("Enter")
    dialog = page.locator("#confirm-dialog")
    assert dialog.is_visible()
    assert _focused(page).startswith("dialog:")
    # Focus stays in the dialog however far one tabs (past its last control it leaves the document for the
    # browser's own controls, as a modal dialog's does; the page behind is inert).
    seen = set()
    for _ in range(8):
        page.keyboard.press("Tab")
        seen.add(_focused(page))
    assert all(f.startswith("dialog:") or f == "BODY" for f in seen), seen
    assert any("Cancel" in f for f in seen), seen
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "one-look-confirm-dialog-light.png"))
    # No profile chosen: Confirm refuses, and looks it (not by colour alone).
    ok = "getComputedStyle(document.querySelector('#confirm-dialog [data-ok]'))"
    assert page.is_disabled("#confirm-dialog [data-ok]") and page.evaluate(ok + ".opacity") == "0.55"
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    assert _focused(page) == "BUTTON:Take action…"
    # Cancel by keyboard returns there too.
    page.keyboard.press("Enter")
    assert dialog.is_visible()
    page.locator("#confirm-dialog [data-cancel]").focus()
    page.keyboard.press("Enter")
    assert not dialog.is_visible()
    assert _focused(page) == "BUTTON:Take action…"
