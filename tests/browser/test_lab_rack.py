"""A technician installs a whole rack of the simulated datacentre from the browser: real IPMI BMCs,
machines that PXE-boot the real agent, a worker process and daphne, as `make run` has them."""

from __future__ import annotations

import pytest

from installs.models import Install, InstallState
from inventory.models import CredentialCheck, Machine
from tests.integration.ui.conftest import user_with_role
from tests.servers import ControlPlane

from .conftest import SCREENSHOTS, lab_running, login, wait_for

pytestmark = pytest.mark.slow

MACHINES = [
    {"hostname": f"rack-a-0{i}", "rack": "a", "position_u": i, "macs": [f"52:54:00:0a:00:0{i}"]} for i in range(1, 5)
]
MACHINES[3]["faults"] = ["bmc_rejects_credentials"]


@pytest.fixture
def lab_rack(live, tmp_path):
    with lab_running(live, tmp_path, MACHINES):
        yield Machine.objects.get(hostname="rack-a-01").rack


def test_technician_installs_a_lab_rack_from_the_browser(browser, live, lab_rack, tmp_path):
    user_with_role("technician", "tech")
    worker = ControlPlane(tmp_path, "lab")
    worker.start()
    try:
        page = login(browser, live, "tech")
        page.goto(f"{live.url}/machines/?rack={lab_rack.pk}")
        page.check("[data-select-all]")
        page.select_option("form[data-confirm-action] select[name=action]", "install")
        page.select_option("form[data-confirm-action] select[name=profile]", "lab-demo-image")
        page.click("text=Take action…")
        dialog = page.locator("#confirm-dialog")
        assert all(m["hostname"] in dialog.inner_text() for m in MACHINES)
        page.fill("[data-typed]", str(len(MACHINES)))  # several machines: type how many
        page.click("[data-ok]")
        page.wait_for_selector("text=install(s) of lab-demo-image requested")

        def all_ended():
            states = list(Install.objects.values_list("state", flat=True))
            return len(states) == len(MACHINES) and all(
                s in (InstallState.SUCCEEDED, InstallState.FAILED) for s in states
            )

        page.goto(f"{live.url}/")
        wait_for(all_ended, timeout=120, what="every install of the rack to end")
        by_host = {i.machine.hostname: i for i in Install.objects.select_related("machine")}
        for m in MACHINES[:3]:
            assert by_host[m["hostname"]].state == InstallState.SUCCEEDED, by_host[m["hostname"]].failure_message
            assert Machine.objects.get(hostname=m["hostname"]).status == "deployed"
        faulty = by_host[MACHINES[3]["hostname"]]
        assert (faulty.state, faulty.failure_reason) == (InstallState.FAILED, "BmcAuthError")
        # The dashboard, updated live without a reload, says why in words.
        page.wait_for_selector("text=rejected the username or password", timeout=20000)
        page.goto(f"{live.url}/machines/?rack={lab_rack.pk}")
        assert page.locator("text=deployed").count() >= 3
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "lab-rack-installed.png"), full_page=True)
    finally:
        worker.stop()


def test_technician_tests_the_racks_bmc_credentials_from_the_browser(browser, live, lab_rack, tmp_path):
    user_with_role("technician", "tech")
    worker = ControlPlane(tmp_path, "lab")
    worker.start()
    try:
        page = login(browser, live, "tech")
        page.goto(f"{live.url}/machines/?rack={lab_rack.pk}")
        page.check("[data-select-all]")
        page.select_option("form[data-confirm-action] select[name=action]", "credentials")
        page.click("text=Take action…")
        page.click("[data-ok]")
        page.wait_for_selector("text=one login each")
        assert "/credential-tests/" in page.url
        wait_for(
            lambda: CredentialCheck.objects.filter(finished_at__isnull=False).exists(),
            timeout=60,
            what="the site worker to finish the credential test",
        )
        page.reload()
        results = {
            row.locator("td").first.inner_text(): row.get_attribute("data-result")
            for row in page.locator("tr[data-result]").all()
        }
        assert results == {m["hostname"]: "ok" for m in MACHINES[:3]} | {MACHINES[3]["hostname"]: "rejected"}
        page.wait_for_selector("text=1 rejected")
    finally:
        worker.stop()
