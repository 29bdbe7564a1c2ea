"""A technician pauses and resumes a batch from its page and sees it change live when others act on it or its
installs move; their saved view of the install list and their choice of machine columns survive a reload.
Saves screenshots of the new pages, light and dark."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from audit.service import Actor
from installs import batches, engine
from installs.models import Batch, BatchState, Install, InstallState
from installs.plan import build_plan
from inventory.stock import sync_stock_profiles
from tests.browser.conftest import SCREENSHOTS, login
from tests.browser.test_live_install import wait_for
from tests.conftest import make_bmc, make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.slow


def _batch_of_two():
    from inventory.models import OSProfile

    sync_stock_profiles()
    rack = make_rack(make_site(slug="lab", name="Lab"), name="r01", height_u=12)
    profile = OSProfile.objects.get(name="debian-12-preseed")
    batch = Batch.objects.create(name="rack 1 refresh", created_by_label="alice", max_per_rack=1)
    installs = []
    for n, state in enumerate((InstallState.INSTALLING, InstallState.QUEUED)):
        machine = make_machine(rack, hostname=f"node-{n + 1:02d}", position_u=1 + n, serial=f"SN-{n}")
        make_bmc(machine, address=f"127.0.8.{n + 1}")
        installs.append(
            Install.objects.create(
                machine=machine, profile=profile, batch=batch, requested_by_label="alice", state=state,
                current_step="Installer running" if n == 0 else "", plan=build_plan(machine, profile),
                token_nonce=f"n{n}", boot_token_hash=f"{n}" * 64,
            )
        )  # fmt: skip
    return batch, installs


def _state_shown(page) -> str:
    return page.locator("[data-batch-state]").inner_text().strip()


def test_pause_and_resume_from_the_batch_page_and_see_others_changes_live(browser, live):
    batch, (running, queued) = _batch_of_two()
    user_with_role("technician", "tech")
    page = login(browser, live, "tech")
    page.goto(f"{live.url}/batches/")
    page.click("text=rack 1 refresh")
    page.wait_for_url(f"{live.url}/batches/{batch.pk}/")
    assert _state_shown(page) == "running"
    assert "0 of 2 ended" in page.inner_text("dl.batch-facts")

    # Pausing asks first, in the page's dialog; going back pauses nothing.
    page.fill("input[name=why]", "switch swap in r01")
    page.click("button:text('Pause')")
    dialog = page.locator("#batch-confirm")
    dialog.wait_for(state="visible")
    assert "No new install of it starts until it is resumed" in dialog.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "batch-pause-confirm.png"))
    dialog.locator("button:text('Back')").click()
    assert Batch.objects.get(pk=batch.pk).state == BatchState.RUNNING
    page.click("button:text('Pause')")
    dialog.locator("button:text('Confirm')").click()
    page.wait_for_selector("text=rack 1 refresh: pause done.")
    assert _state_shown(page) == "paused" and "switch swap in r01" in page.inner_text("dl.batch-facts")
    assert AuditEntry.objects.filter(action="batch.pause", actor_label="tech").exists()

    page.click("button:text('Resume')")
    page.wait_for_selector("text=rack 1 refresh: resume done.")
    assert _state_shown(page) == "running"
    assert Batch.objects.get(pk=batch.pk).state == BatchState.RUNNING

    # From here on the page is not reloaded: a marker set now would be gone after a reload.
    page.wait_for_selector("[data-live-status]:text('live')")
    page.evaluate("window.stillTheSamePage = true")
    batches.set_batch_state(batch.pk, BatchState.PAUSED, Actor.system("night-shift"), "power work")
    wait_for(lambda: _state_shown(page) == "paused", what="the pause by someone else, live")
    assert "power work" in page.inner_text("dl.batch-facts")
    engine.cancel(queued.pk, actor=Actor.system("night-shift"), why="machine pulled")
    wait_for(lambda: "1 of 2 ended" in page.inner_text("dl.batch-facts"), what="the install's end, live")
    row = page.locator("tr", has=page.locator(f"a:text('{queued.machine.hostname}')"))
    assert "cancelled" in row.inner_text()
    assert page.evaluate("window.stillTheSamePage") is True
    page.screenshot(path=str(SCREENSHOTS / "batch-detail-light.png"), full_page=True)
    page.goto(f"{live.url}/batches/")
    page.screenshot(path=str(SCREENSHOTS / "batch-list-light.png"), full_page=True)

    dark = login(browser, live, "tech", color_scheme="dark")
    dark.goto(f"{live.url}/batches/{batch.pk}/")
    dark.screenshot(path=str(SCREENSHOTS / "batch-detail-dark.png"), full_page=True)
    dark.goto(f"{live.url}/batches/")
    dark.screenshot(path=str(SCREENSHOTS / "batch-list-dark.png"), full_page=True)


def test_a_saved_view_and_a_column_choice_survive_a_reload(browser, live):
    _batch_of_two()
    user_with_role("viewer", "reader")
    page = login(browser, live, "reader")

    page.goto(f"{live.url}/installs/")
    page.select_option("select[name=state]", "queued")
    page.click("button:text('Filter')")
    page.fill("input[name=name]", "Waiting")
    page.click("button:text('Save view')")
    page.wait_for_selector("text=Saved the view “Waiting”.")
    page.goto(f"{live.url}/installs/")
    page.reload()
    page.click(".saved-views a:text('Waiting')")
    page.wait_for_url(f"{live.url}/installs/?state=queued")
    assert page.locator("tbody tr").count() == 1 and "node-02" in page.inner_text("tbody")
    page.screenshot(path=str(SCREENSHOTS / "install-saved-views-light.png"), full_page=True)

    page.goto(f"{live.url}/machines/")
    page.click("details.columns-choice summary")
    for label in ("Serial", "BMC", "Hardware"):
        page.locator("details.columns-choice label", has_text=label).locator("input").uncheck()
    page.screenshot(path=str(SCREENSHOTS / "machine-columns-light.png"), full_page=True)
    page.click("button:text('Show these columns')")
    page.reload()
    head = page.inner_text("table.machines thead")
    assert "Status" in head and "Serial" not in head and "BMC" not in head and "Hardware" not in head
    assert "SN-0" not in page.inner_text("table.machines tbody")

    dark = login(browser, live, "reader", color_scheme="dark")
    dark.goto(f"{live.url}/installs/?state=queued")
    dark.screenshot(path=str(SCREENSHOTS / "install-saved-views-dark.png"), full_page=True)
    dark.goto(f"{live.url}/machines/")
    dark.click("details.columns-choice summary")
    dark.screenshot(path=str(SCREENSHOTS / "machine-columns-dark.png"), full_page=True)
    assert "Serial" not in dark.inner_text("table.machines thead")  # the same choice in another browser
