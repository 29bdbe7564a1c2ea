"""A technician chooses virtual media in the browser: the confirm dialog says how the machine will boot, and the
install it starts runs the stock workflow that boots from virtual media."""

from __future__ import annotations

from installs.models import Install
from tests.browser.conftest import login
from tests.browser.test_live_install import build_lab, wait_for
from tests.integration.ui.conftest import user_with_role


def test_the_install_form_boots_from_virtual_media(browser, live, tmp_path):
    _, machines = build_lab(tmp_path)
    machine = machines[0]
    user_with_role("technician", "tech")
    page = login(browser, live, "tech")
    csp_errors = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{live.url}/machines/{machine.hostname}/")
    page.select_option("select[name=action]", "install")
    page.select_option("select[name=profile]", "debian-12-preseed")
    page.select_option("select[name=boot]", "virtual-media")
    page.click("text=Take action…")
    dialog = page.locator("#confirm-dialog")
    assert "debian-12-preseed, boot from virtual media" in dialog.inner_text()
    page.fill("[data-typed]", machine.hostname)
    page.click("[data-ok]")
    page.wait_for_selector("text=install(s) of debian-12-preseed requested")
    install = wait_for(lambda: Install.objects.filter(machine=machine).first(), what="the install row")
    assert install.plan.flow.name == "stock-installer-virtual-media"
    assert install.steps.filter(kind="insert_media").exists()
    assert not csp_errors
