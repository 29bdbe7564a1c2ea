"""Tags in the browser: chips beside each hostname in light and dark (screenshots), Apply tag submitting without
the confirm dialog, and "every machine tagged X" going to the server's confirm page with the machines listed."""

from __future__ import annotations

from audit.service import Actor
from inventory import tagging
from inventory.models import Machine
from tests.browser.conftest import SCREENSHOTS, login
from tests.conftest import make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role


def test_tags_on_the_machine_list(browser, live):
    rack = make_rack(make_site(slug="lab"), name="r01", height_u=12)
    for n in range(1, 5):
        make_machine(rack, hostname=f"node-{n:02d}", position_u=n)
    actor = Actor.system("test")
    tagging.set_machine_tags("node-01", ["gpu", "customer-a"], actor)
    tagging.set_machine_tags("node-02", ["gpu"], actor)
    tagging.set_machine_tags("node-03", ["storage"], actor)
    tagging.update_tag("gpu", {"colour": "green", "description": "Has GPUs"}, actor)
    tagging.update_tag("storage", {"colour": "blue"}, actor)
    user_with_role("admin", "boss")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        page = login(browser, live, "boss", color_scheme=scheme)
        csp_errors = []
        page.on("console", lambda m, e=csp_errors: e.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{live.url}/machines/")
        chip = page.locator("a.tag", has_text="gpu").first
        assert chip.is_visible() and chip.inner_text() == "gpu"
        # The colour tints the chip's border; the name is its text.
        assert chip.evaluate("e => getComputedStyle(e).borderTopColor") != "rgba(0, 0, 0, 0)"
        page.screenshot(path=str(SCREENSHOTS / f"machine-list-tags-{scheme}.png"), full_page=True)
        page.goto(f"{live.url}/machines/node-01/")
        page.screenshot(path=str(SCREENSHOTS / f"machine-tags-{scheme}.png"), full_page=True)
        assert not csp_errors
        page.context.close()

    page = login(browser, live, "boss")
    page.goto(f"{live.url}/machines/")
    page.check("input[aria-label='select node-04']")
    page.fill("#bulk input[name=tag]", "rack-b")
    page.click("text=Apply tag")
    page.wait_for_selector("text=Tag rack-b added to 1 machine(s).")
    assert not page.locator("#confirm-dialog").is_visible()
    assert list(Machine.objects.get(hostname="node-04").tags.values_list("name", flat=True)) == ["rack-b"]

    page.select_option("#bulk select[name=action]", "on")
    page.select_option("#bulk select[name=with_tag]", "gpu")
    page.click("text=Take action…")
    page.wait_for_selector("h1:has-text('Power on')")
    assert page.locator("ul.machine-names li").all_inner_texts() == ["node-01", "node-02"]
