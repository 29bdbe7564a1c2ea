"""axe-core over the main pages, light and dark: no violation of impact "moderate", "serious" or "critical"
("minor" ones are printed, to be read). axe is a test tool vendored under tests/browser/vendor/, never served; it
is injected into a context that bypasses the page's CSP, for this check only (every other browser test runs under
the CSP)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.conftest import PASSWORD, SCREENSHOTS
from tests.integration.ui.conftest import scene, user_with_role  # noqa: F401  (scene is a fixture)

pytestmark = pytest.mark.slow

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
# Swagger UI's own widgets (vendored, third-party markup) are left out; the page's header and frame are checked.
RUN_AXE = """async () => {
  const result = await axe.run({exclude: [".swagger-ui"]}, {resultTypes: ["violations"]});
  const why = n => { const d = (n.any[0] || {}).data || {};
                     return d.contrastRatio ? ` (${d.fgColor} on ${d.bgColor}: ${d.contrastRatio})` : ""; };
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + why(n))}));
}"""
BLOCKING = {"moderate", "serious", "critical"}


def _pages(s) -> list[str]:
    return [
        "/",
        "/machines/",
        f"/machines/{s.idle.hostname}/",
        f"/machines/{s.idle.hostname}/hardware/",
        "/installs/",
        f"/installs/{s.running.pk}/",
        f"/installs/{s.failed.pk}/",
        "/racks/",
        f"/racks/{s.rack.pk}/",
        f"/sites/{s.site.slug}/",
        "/batches/",
        f"/batches/{s.batch.pk}/",
        "/discovered/",
        f"/discovered/{s.discovered.pk}/",
        "/audit/",
        "/profiles/",
        "/ssh-sessions/",
        "/account/tokens/",
        "/admin/",
        "/admin/inventory/machine/",
        "/api/v1/docs",
    ]


def _audit(page) -> list[dict]:
    page.evaluate(AXE)
    return page.evaluate(RUN_AXE)


def _report(url: str, scheme: str, violations: list[dict]) -> list[str]:
    blocking = []
    for v in violations:
        line = f"{scheme} {url}: [{v['impact']}] {v['id']}: {v['help']} at {json.dumps(v['nodes'])}"
        print(line)
        if v["impact"] in BLOCKING:
            blocking.append(line)
    return blocking


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_main_pages_have_no_moderate_or_worse_accessibility_violations(browser, live, scene, scheme):  # noqa: F811
    from access.models import ShellSession
    from accounts.api_tokens import create_token
    from audit.service import Actor

    boss = user_with_role("superuser", "boss")
    create_token(boss, "ci", actor=Actor.system("test"))
    ShellSession.objects.create(
        machine=scene.idle,
        hostname=scene.idle.hostname,
        site=scene.site,
        opened_by=boss,
        opened_by_label="boss",
        client="browser",
        principal="root",
        via="bastion-1",
        reason="look at the disks",
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme, bypass_csp=True)
    page = context.new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(live.url + "/login/")
    blocking = _report("/login/", scheme, _audit(page))
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live.url + "/")

    for url in _pages(scene):
        response = page.goto(live.url + url)
        assert response.ok, f"{url}: {response.status}"
        page.wait_for_load_state("networkidle")
        blocking += _report(url, scheme, _audit(page))
    page.screenshot(path=str(SCREENSHOTS / f"a11y-api-docs-{scheme}.png"))
    context.close()

    assert not blocking, "\n".join(blocking)
