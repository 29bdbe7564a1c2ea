"""A technician's day in the browser: start an install, watch it finish live (through a dropped
websocket and a restarted server), and a viewer who is offered no buttons. Saves screenshots."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from installs.models import Event, Install, InstallState
from installs.tokens import callback_token
from tests.browser.conftest import SCREENSHOTS, login, wait_for
from tests.conftest import make_bmc, make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role
from tests.servers import ControlPlane

pytestmark = pytest.mark.slow


def installer_says(server, install: Install, kind: str, message: str = "") -> dict:
    """What the installer on the machine does: POST /i/<callback token>/events/<kind>."""
    url = f"{server.url}/i/{callback_token(install.token_nonce)}/events/{kind}"
    body = json.dumps({"message": message}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def build_lab(tmp_path):
    from inventory.models import MachineStatus
    from inventory.stock import sync_stock_profiles

    sync_stock_profiles()
    tftp = tmp_path / "tftp"
    tftp.mkdir()
    site = make_site(slug="lab", name="Lab", tftp_root=str(tftp))
    racks = [make_rack(site, name=f"r0{n}", height_u=24) for n in (1, 2)]
    machines = []
    statuses = [MachineStatus.READY, MachineStatus.DEPLOYED, MachineStatus.NEW, MachineStatus.FAILED]
    for n in range(16):
        rack = racks[n % 2]
        m = make_machine(
            rack,
            hostname=f"node-{n + 1:02d}",
            position_u=1 + (n // 2) * 2,
            height_u=1 + (n % 3 == 0),
            vendor=("Dell" if n % 2 else "HPE"),
            model=("R650" if n % 2 else "DL360 Gen10"),
            serial=f"SN{1000 + n}",
            status=statuses[n % 4],
        )
        make_bmc(m, driver="fake", address=f"127.0.9.{n + 1}")
        machines.append(m)
    return site, machines


def wait_js(page, expression: str, timeout: float = 15):
    """page.wait_for_function evaluates its predicate with eval(), which our CSP forbids (rightly);
    page.evaluate goes through the debugger protocol, so poll with that."""
    wait_for(lambda: page.evaluate(expression), timeout=timeout, what=expression)


def log_ids(page) -> list[int]:
    return page.eval_on_selector_all("[data-log] [data-event-id]", "els => els.map(e => +e.dataset.eventId)")


def test_install_live_through_a_dropped_socket_and_a_server_restart(browser, live, tmp_path):
    site, machines = build_lab(tmp_path)
    machine = machines[0]
    user_with_role("technician", "tech")
    user_with_role("viewer", "viewer")
    worker = ControlPlane(tmp_path, site.slug)
    worker.start()
    try:
        page = login(browser, live, "tech")
        csp_errors = []
        page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)

        # Start the install from the machine page, through the confirm dialog that wants the hostname.
        page.goto(f"{live.url}/machines/{machine.hostname}/")
        page.select_option("select[name=action]", "install")
        page.select_option("select[name=profile]", "debian-12-preseed")
        page.click("text=Take action…")
        dialog = page.locator("#confirm-dialog")
        assert dialog.is_visible()
        assert machine.hostname in dialog.inner_text()
        assert page.is_disabled("[data-ok]")
        page.fill("[data-typed]", machine.hostname)
        page.click("[data-ok]")
        page.wait_for_selector("text=install(s) of debian-12-preseed requested")
        install = wait_for(lambda: Install.objects.filter(machine=machine).first(), what="the install row")

        page.goto(f"{live.url}/installs/{install.pk}/")
        page.wait_for_selector("[data-live-status].connected")
        page.evaluate("window.__sameDocument = true")

        # The worker powers the machine (fake BMC) and waits for the installer to start.
        wait_for(lambda: Install.objects.get(pk=install.pk).state == InstallState.BOOTING, what="booting")
        page.wait_for_selector("[data-install-state]:text('booting')", timeout=15000)
        assert installer_says(live, install, "started")["outcome"] == "booted"
        page.wait_for_selector("[data-install-state]:text('installing')", timeout=15000)

        # Drop the socket; what happens meanwhile must show once the page reconnects.
        page.evaluate("window.provisionerLive.socket.close()")
        for n in range(5):
            installer_says(live, install, "progress", f"while the socket was down {n}")
        wait_js(
            page,
            "[...document.querySelectorAll('[data-log] li')]"
            ".filter(li => li.textContent.includes('socket was down')).length === 5",
        )

        # Restart the server: every socket drops; the page reconnects to the new process by itself.
        live.stop()
        page.wait_for_selector("[data-live-status].disconnected", timeout=10000)
        live.start()
        installer_says(live, install, "progress", "after the restart")
        page.wait_for_selector("[data-log] li:has-text('after the restart')", timeout=20000)

        # A second tab on the machine list, with a row ticked: it follows the install without a reload,
        # and the tick survives the rows being re-rendered.
        listing = page.context.new_page()
        listing.goto(f"{live.url}/machines/")
        listing.wait_for_selector("[data-live-status].connected")
        listing.evaluate("window.__sameDocument = true")
        listing.check(f"input[data-hostname='{machines[1].hostname}']")

        assert installer_says(live, install, "finished", "installer done")["outcome"] == "finished"
        page.wait_for_selector("[data-install-state]:text('succeeded')", timeout=30000)
        wait_js(page, "document.querySelector('[data-progress]').value === 100")
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
        row = f"tr:has(a:text-is('{machine.hostname}'))"
        listing.wait_for_selector(f"{row} .badge:text('succeeded')", timeout=15000)
        assert listing.evaluate("window.__sameDocument") is True
        assert listing.is_checked(f"input[data-hostname='{machines[1].hostname}']")
        listing.close()

        # Every stored event of the install is on the page exactly once, in order.
        time.sleep(0.5)
        ids = log_ids(page)
        stored = list(Event.objects.filter(install=install).order_by("id").values_list("id", flat=True))
        assert len(ids) == len(set(ids)), "an event is shown twice"
        assert sorted(ids) == stored, "an event is missing"
        steps = page.eval_on_selector_all("[data-timeline] li", "els => els.map(e => e.dataset.stepState)")
        assert steps and set(steps) <= {"succeeded", "skipped"}  # every step ended, none failed
        assert not csp_errors, csp_errors

        shoot(page, live, install, machines)

        # A viewer sees the same pages with no way to act.
        viewer = login(browser, live, "viewer")
        viewer.goto(f"{live.url}/installs/{install.pk}/")
        assert viewer.locator("text=Retry").count() == 0
        assert viewer.locator("form[action*='/cancel']").count() == 0
        viewer.goto(f"{live.url}/machines/")
        viewer.keyboard.press("/")
        assert viewer.evaluate("document.activeElement.name") == "q"  # "/" focuses the search
        viewer.keyboard.type("node-0")
        viewer.keyboard.press("Escape")
        viewer.click("[data-theme-switch]")  # the system says light; the switch makes it dark, and it sticks
        assert viewer.evaluate("document.documentElement.dataset.theme") == "dark"
        viewer.reload()
        assert viewer.evaluate("document.documentElement.dataset.theme") == "dark"
        assert viewer.locator("#bulk").count() == 0
        assert viewer.locator("input[name=machine]").count() == 0
        viewer.goto(f"{live.url}/machines/{machine.hostname}/")
        assert viewer.locator("text=Take action…").count() == 0
        assert viewer.locator("text=Ping BMC").count() == 0
        viewer.goto(f"{live.url}/")
        assert viewer.locator("text=Acknowledge").count() == 0
        assert viewer.locator("button:has-text('Pause')").count() == 0
    finally:
        worker.stop()


def busy_scene(machines):
    """Installs in every state on the other machines, so the screenshots show a working day. Rows only:
    no job moves them (the worker has nothing queued for them)."""
    from installs.models import Alert, Batch, Step, StepKind
    from inventory.models import OSProfile

    profile = OSProfile.objects.get(name="debian-12-preseed")
    batch = Batch.objects.create(name="rack r02 refresh", created_by_label="tech")
    states = ["installing", "booting", "preparing", "verifying", "queued", "failed", "installing", "powering"]
    for n, (machine, state) in enumerate(zip(machines[1:], states, strict=False)):
        failed = state == "failed"
        install = Install.objects.create(
            machine=machine,
            profile=profile,
            batch=batch,
            requested_by_label="tech",
            state=state,
            progress=[55, 45, 10, 90, 0, 60, 70, 30][n],
            current_step={"installing": "Installer running", "booting": "Wait for the installer or agent to start"}.get(
                state, state.title()
            ),
            failure_reason="InstallerFailed" if failed else "",
            failure_message="The installer reported a failure: no disk found. See the install log." if failed else "",
            plan={},
            token_nonce=f"shot{n}",
            boot_token_hash=f"{n:064d}",
        )
        Step.objects.create(install=install, order=0, kind=StepKind.CHECK_BMC, state="succeeded")
        if failed:
            Alert.objects.create(install=install, machine=machine, reason="InstallerFailed", message="no disk found")


def shoot(page, live, install, machines):
    """Light and dark screenshots of the main pages, for people to look at."""
    machine = machines[0]
    busy_scene(machines)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = {
        "dashboard": "/",
        "machine-list": "/machines/",
        "install": f"/installs/{install.pk}/",
        "rack": "/racks/",
        "machine": f"/machines/{machine.hostname}/",
    }
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for name, path in pages.items():
            page.goto(live.url + path)
            page.wait_for_timeout(500)
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 820, "height": 1180})  # a tablet, upright
    for name in ("dashboard", "machine-list", "install"):
        page.goto(live.url + pages[name])
        page.wait_for_timeout(500)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-tablet.png"), full_page=False)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} scrolls sideways on a tablet"
    page.set_viewport_size({"width": 1280, "height": 800})
