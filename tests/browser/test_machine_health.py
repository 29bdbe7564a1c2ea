"""A technician reads a machine's sensors and clears its event log from the browser. The site's worker is this
test process (a burst of SimpleWorker), so it reads the same fake BMC the test looks at."""

from __future__ import annotations

import pytest
from rq import SimpleWorker

from audit.models import AuditEntry
from core import queues
from provisioner.bmc.fake import fake_bmc, reset_fakes
from tests.browser.conftest import SCREENSHOTS, login
from tests.conftest import make_bmc, make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.slow


def site_worker_runs(slug: str) -> None:
    queue = queues.site_queue(slug)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def test_technician_refreshes_sensors_and_clears_the_event_log(browser, live):
    reset_fakes()
    rack = make_rack(make_site(slug="lab", name="Lab"), name="r01", height_u=12)
    machine = make_machine(rack, hostname="web-01", position_u=1)
    make_bmc(machine, driver="fake", address="127.0.5.1")
    fake_bmc("127.0.5.1", 623).power = "on"
    technician = user_with_role("technician", "tech")
    page = login(browser, live, "tech")

    page.goto(f"{live.url}/machines/web-01/")
    panel = page.locator("#health")
    assert "Not read yet." in panel.inner_text()
    panel.locator("button:text('Refresh')").click()
    page.wait_for_selector("text=Reading web-01's sensors and event log")
    assert fake_bmc("127.0.5.1", 623).calls == []  # the web process never talks to the BMC
    site_worker_runs("lab")
    page.reload()
    sensors = page.locator("table.sensors").inner_text()
    assert "CPU1 Temp" in sensors and "48 °C" in sensors and "85 / 95" in sensors
    assert page.locator("table.events tbody tr").count() == 4
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(SCREENSHOTS / "machine-health.png"))

    panel.locator("input[name=confirm]").fill("web-01")
    page.click("button:text('Clear event log')")
    page.wait_for_selector("text=Clearing web-01's event log")
    site_worker_runs("lab")
    page.reload()
    assert page.locator("table.events tbody tr").count() == 1
    assert "Event log cleared" in page.locator("table.events").inner_text()
    entry = AuditEntry.objects.get(action="machine.sel_clear")
    assert entry.actor_user == technician and entry.details == {"ok": True, "entries": 4}
