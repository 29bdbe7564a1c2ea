"""Reach: the main pages work on a tablet (768×1024, touch) and at 1280×800, and the machine list and its confirm
dialog work from the keyboard alone.

"Works" is measured, not looked at: the document never scrolls sideways (a wide table scrolls inside its own
frame), and each page's main controls are on screen, not covered, and at least 24 CSS pixels on a touch screen
(WCAG 2.2's minimum target size), so a finger can hit them. Screenshots go to var/screenshots/tablet-*.png and
desktop-*.png."""

from __future__ import annotations

import pytest

from tests.browser.conftest import SCREENSHOTS, login
from tests.integration.ui.conftest import scene, user_with_role  # noqa: F401  (scene is a fixture)

pytestmark = pytest.mark.slow

TABLET = {"viewport": {"width": 768, "height": 1024}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
TOUCH_TARGET_PX = 24

# Where a control is, measured in the page: its box, whether the point at its centre hits it (nothing covers it),
# and the width the document has against the window's.
MEASURE = """el => {
  el.scrollIntoView({block: "center", inline: "nearest"});
  const r = el.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height,
          hit: !!hit && (el === hit || el.contains(hit)), vw: window.innerWidth, vh: window.innerHeight,
          form: /^(BUTTON|INPUT|SELECT|TEXTAREA|SUMMARY)$/.test(el.tagName)};
}"""
OVERFLOW = """() => ({scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
                      inner: window.innerWidth})"""


def _pages(s) -> list[tuple[str, str, list[str]]]:
    """(name, url, the page's main controls) for the pages a technician uses through the day."""
    return [
        ("machines", "/machines/", [
            "input[name=q]", "button:text-is('Filter')", "input[name=machine]", "#bulk select[name=action]",
            "#bulk button:text-is('Take action…')",
        ]),
        ("machine", f"/machines/{s.idle.hostname}/", [
            "#act select[name=action], select[name=action]", "button:text-is('Take action…')",
            ".lifecycle-actions button",
        ]),
        ("install", f"/installs/{s.failed.pk}/", ["button:text-is('Retry')", "a:text-is('download as text')"]),
        ("install-running", f"/installs/{s.running.pk}/", ["input[name=why]", "button:text-is('Cancel install')"]),
        ("site", f"/sites/{s.site.slug}/", ["svg.elevation a[data-machine]", ".site-picker a"]),
        ("batches", "/batches/", ["select[name=state]", "table.batches td a"]),
        ("batch", f"/batches/{s.batch.pk}/", [".batch-actions button"]),
    ]  # fmt: skip


def _check_page(page, name: str, controls: list[str], *, width: int, touch: bool) -> list[str]:
    problems = []
    # A phone or tablet browser widens its layout to fit what overflows, so the window's width is compared too.
    seen = page.evaluate(OVERFLOW)
    if max(seen.values()) > width:
        problems.append(f"{name}: the document is {seen['scroll']} px wide in a {width} px window ({seen})")
    for selector in controls:
        control = page.locator(selector).first
        if not control.count():
            problems.append(f"{name}: no {selector}")
            continue
        if not control.is_visible():
            problems.append(f"{name}: {selector} is hidden")
            continue
        box = control.evaluate(MEASURE)
        if box["left"] < 0 or box["right"] > box["vw"]:
            problems.append(f"{name}: {selector} lies outside the window ({box['left']:.0f}–{box['right']:.0f} px)")
        if not box["hit"]:
            problems.append(f"{name}: {selector} is covered by something else")
        # Links in text and in the rack drawings fall under WCAG 2.5.8's inline and spacing exceptions.
        if touch and box["form"] and min(box["width"], box["height"]) < TOUCH_TARGET_PX:
            problems.append(f"{name}: {selector} is {box['width']:.0f}×{box['height']:.0f} px, too small to tap")
    return problems


@pytest.mark.parametrize("device", ["tablet", "desktop"])
def test_the_main_pages_fit_and_their_controls_can_be_tapped(browser, live, scene, device):  # noqa: F811
    user_with_role("superuser", "boss")
    options = TABLET if device == "tablet" else DESKTOP
    page = login(browser, live, "boss", **options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, url, controls in _pages(scene):
        response = page.goto(live.url + url)
        assert response.ok, f"{url}: {response.status}"
        page.wait_for_load_state("networkidle")
        problems += _check_page(page, name, controls, width=options["viewport"]["width"], touch=device == "tablet")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / f"{device}-{name}.png"), full_page=True)
    assert not problems, "\n".join(problems)

    if device == "tablet":
        # A finger ticks a row and opens the action dialog, which fits the screen.
        page.goto(live.url + "/machines/")
        box = page.locator(f"input[name=machine][data-hostname='{scene.idle.hostname}']")
        box.tap()
        assert box.is_checked()
        page.locator("#bulk button:text-is('Take action…')").tap()
        dialog = page.locator("dialog#confirm-dialog")
        assert dialog.is_visible()
        frame = dialog.evaluate(MEASURE)
        assert 0 <= frame["left"] and frame["right"] <= frame["vw"], frame
        page.screenshot(path=str(SCREENSHOTS / "tablet-confirm-dialog.png"))
        page.locator("dialog#confirm-dialog button[data-cancel]").tap()
        assert not dialog.is_visible()


# What has keyboard focus, and whether it shows: an outline of at least 2 px (or the drawing's own stroke).
FOCUSED = """() => {
  const a = document.activeElement, s = getComputedStyle(a);
  return {tag: a.tagName, name: a.getAttribute("name") || "", text: (a.textContent || "").trim().slice(0, 30),
          host: (a.dataset && a.dataset.hostname) || "", typed: a.hasAttribute("data-typed"),
          outline: s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2,
          dialog: !!document.querySelector("dialog[open]")};
}"""


def _tab_to(page, wanted, *, back: bool = False, limit: int = 80) -> list[dict]:
    """Press Tab (Shift+Tab going back) until wanted(focused) is true; every stop on the way, in order."""
    stops = []
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        stops.append(page.evaluate(FOCUSED))
        if wanted(stops[-1]):
            return stops
    raise AssertionError(f"not reached in {limit} key presses: {stops[-5:]}")


def test_the_machine_list_and_its_dialog_work_from_the_keyboard(browser, live, scene):  # noqa: F811
    user_with_role("superuser", "boss")
    page = login(browser, live, "boss")
    page.goto(live.url + "/machines/")
    page.wait_for_load_state("networkidle")

    # From the top of the page to the first row's checkbox: every stop on the way shows where focus is.
    stops = _tab_to(page, lambda f: f["name"] == "machine" and f["host"])
    unseen = [f"{s['tag']} {s['name'] or s['text']}" for s in stops if not s["outline"]]
    assert not unseen, unseen
    row = page.locator(f"input[name=machine][data-hostname='{stops[-1]['host']}']")
    page.keyboard.press("Space")
    assert row.is_checked()

    # Back to the action, chosen with the arrow keys, then to its button.
    _tab_to(page, lambda f: f["tag"] == "SELECT" and f["name"] == "action", back=True)
    for _ in range(5):
        page.keyboard.press("ArrowDown")
    assert page.locator("#bulk select[name=action]").input_value() == "off"
    _tab_to(page, lambda f: f["text"] == "Take action…", limit=10)

    # Enter opens the dialog with focus in the box that wants the hostname; Escape closes it and focus goes back.
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#confirm-dialog")
    assert dialog.is_visible()
    inside = page.evaluate(FOCUSED)
    assert inside["typed"] and inside["outline"], inside
    assert "Power off on 1 machine(s)" in dialog.locator("[data-what]").inner_text()
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    back = page.evaluate(FOCUSED)
    assert back["text"] == "Take action…" and back["outline"], back
    assert row.is_checked()

    # Again, and out through Cancel by keyboard: Confirm stays disabled until the hostname is typed.
    page.keyboard.press("Enter")
    page.keyboard.type(stops[-1]["host"])
    assert dialog.locator("[data-ok]").is_enabled()
    _tab_to(page, lambda f: f["text"] == "Cancel", limit=5)
    page.keyboard.press("Enter")
    assert not dialog.is_visible()
    assert page.evaluate(FOCUSED)["text"] == "Take action…"
