"""A technician works a machine's lifecycle in the browser: release asks for the hostname in the confirm dialog
before anything is sent, a status change takes its reason and the page shows it, and the hardware page renders
a commissioning's facts."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from installs.models import Batch
from inventory.models import Machine
from tests.browser.conftest import SCREENSHOTS, login
from tests.conftest import make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role
from tests.integration.ui.lifecycle_data import FULL_FACTS, commissioned, facts_version, put

pytestmark = pytest.mark.slow


def test_release_is_confirmed_by_the_hostname_and_a_mark_keeps_its_reason(browser, live):
    rack = make_rack(make_site(slug="lab", name="Lab"), name="r01", height_u=12)
    machine = commissioned(make_machine(rack, hostname="web-01", position_u=1), cores=64, memory_gib=512, nvme=2,
                           nic_mbps=25000, cpu="AMD EPYC 7543", switch="leaf-r01-a", port="Ethernet1/1")  # fmt: skip
    put(machine, "deployed")
    facts_version(machine, 1, FULL_FACTS)
    user_with_role("technician", "tech")
    page = login(browser, live, "tech")
    csp_errors = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)

    page.goto(f"{live.url}/machines/web-01/")
    panel = page.locator("#lifecycle")
    assert "deployed" in panel.inner_text() and "64 cores · 512 GiB" in panel.inner_text()
    panel.locator("form[data-lifecycle=release] button").click()
    dialog = page.locator("#confirm-dialog")
    assert dialog.is_visible() and "Release on 1 machine(s):" in dialog.inner_text()
    assert "web-01" in dialog.locator("[data-names]").inner_text()
    assert page.is_disabled("[data-ok]")
    page.fill("[data-typed]", "web-02")
    assert page.is_disabled("[data-ok]")
    page.fill("[data-typed]", "web-01")
    assert page.is_enabled("[data-ok]")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "lifecycle-release-dialog.png"))
    page.click("[data-cancel]")
    assert not dialog.is_visible() and not Batch.objects.exists()

    form = panel.locator("form[data-lifecycle=enter-maintenance]")
    form.locator("input[name=reason]").fill("cabling audit of rack r01")
    form.locator("button").click()
    page.wait_for_selector("text=web-01 is maintenance.")
    panel = page.locator("#lifecycle")
    assert "cabling audit of rack r01" in panel.inner_text()
    assert panel.locator("form[data-lifecycle=exit-maintenance]").count() == 1
    assert panel.locator("form[data-lifecycle=release]").count() == 0  # not from maintenance
    panel.screenshot(path=str(SCREENSHOTS / "lifecycle-panel.png"))
    assert Machine.objects.get(pk=machine.pk).status == "maintenance"
    assert AuditEntry.objects.get(action="machine.lifecycle").details["reason"] == "cabling audit of rack r01"

    page.goto(f"{live.url}/machines/web-01/hardware/")
    assert "leaf-r07-a port Ethernet12/1" in page.locator("table.fact-nics").inner_text()
    assert "FAILED" in page.locator("table.disks").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "machine-hardware.png"), full_page=True)
    assert not csp_errors
