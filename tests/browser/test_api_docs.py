"""A viewer opens the REST API's interactive documentation: Swagger UI, from our own static files, lists the
operations under the pages' Content-Security-Policy (no violation, no request leaves the server) and runs one
with the browser's session."""

from __future__ import annotations

import pytest

from tests.browser.conftest import SCREENSHOTS, login
from tests.conftest import make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.slow

# Recorded from inside the page, before any of its scripts run: what the policy blocked, and why.
WATCH_CSP = """
window.__blocked = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__blocked.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def test_the_docs_page_lists_the_operations_and_runs_one_under_the_policy(browser, live):
    make_machine(make_rack(make_site(slug="lab", name="Lab"), name="r01"), hostname="web-01", position_u=1)
    user_with_role("viewer", "reader")
    page = login(browser, live, "reader")
    console, elsewhere, errors = [], [], []
    page.on("console", lambda m: console.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith(live.url) else None)
    page.add_init_script(WATCH_CSP)

    page.goto(f"{live.url}/api/v1/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/machines" in paths and "/api/v1/batches" in paths and "/api/v1/installs" in paths
    assert "provisioner API" in page.locator(".info .title").inner_text()

    operation = page.locator("#operations-machines-list_machines")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    status.wait_for(timeout=20000)
    assert status.inner_text().strip() == "200"
    assert "web-01" in operation.locator(".live-responses-table tbody .response-col_description").first.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "api-docs.png"), full_page=False)

    assert page.evaluate("window.__blocked") == []
    assert console == [] and errors == [] and elsewhere == []
