"""A technician types into a machine's serial console in the browser (xterm.js over the websocket, daphne,
ipmi_sim's serial-over-LAN) and sees the serial port's echo; a second technician watches; the session is then
replayed from its recording."""

from __future__ import annotations

import pytest

from serialconsole.models import ConsoleSession
from tests import redis_claim
from tests.conftest import make_bmc, make_machine
from tests.integration.bmc.conftest import IPMI_USER, IpmiSim, SerialPort
from tests.integration.ui.conftest import user_with_role
from tests.servers import Daphne

from .conftest import SCREENSHOTS, login
from .test_live_install import wait_for


@pytest.fixture
def console_server(transactional_db, tmp_path):
    redis_claim.flush()
    server = Daphne(tmp_path, CONSOLE_IDLE_GRACE_S="0.5")
    server.start()
    yield server
    server.stop()
    redis_claim.flush()


@pytest.fixture
def sol_sim(tmp_path):
    serial = SerialPort(echo=True)
    sim = IpmiSim(tmp_path / "sim", serial=serial).start()
    serial.wait_connected()
    yield sim
    sim.kill()
    serial.close()


def screen_text(page) -> str:
    return page.eval_on_selector(".serial-console .xterm-rows", "rows => rows.innerText")


def test_type_into_the_console_and_see_the_echo(browser, console_server, sol_sim):
    machine = make_machine(hostname="sol-01")
    make_bmc(machine, driver="ipmi", port=sol_sim.port, username=IPMI_USER, password=sol_sim.password)
    user_with_role("technician", "tina")
    user_with_role("technician", "theo")

    page = login(browser, console_server, "tina")
    blocked = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(console_server.url + "/machines/sol-01/")
    page.click("text=Open the serial console")
    page.wait_for_selector("text=You have the keyboard.")
    page.click(".serial-console .xterm")
    page.keyboard.type("echo typed-in-chromium")
    page.keyboard.press("Enter")
    sol_sim.serial.wait_for(b"echo typed-in-chromium\r")
    page.wait_for_function(
        "() => document.querySelector('.serial-console .xterm-rows').innerText.includes('echo typed-in-chromium')"
    )

    watcher = login(browser, console_server, "theo")
    watcher.goto(console_server.url + "/machines/sol-01/console/")
    watcher.wait_for_selector("text=tina is typing; you are watching.")
    assert "echo typed-in-chromium" in screen_text(watcher)  # the backlog: the screen it joined
    sol_sim.serial.send(b"\r\nkernel: eth0 link up\r\n")
    for p in (page, watcher):
        p.wait_for_function(
            "() => document.querySelector('.serial-console .xterm-rows').innerText.includes('eth0 link up')"
        )
    watcher.keyboard.type("x")
    watcher.wait_for_selector("text=tina is typing; you are watching")
    page.screenshot(path=str(SCREENSHOTS / "serial-console.png"))
    assert blocked == []

    watcher.click("text=Take the keyboard")
    watcher.wait_for_selector("text=You have the keyboard.")
    page.wait_for_selector("text=theo is typing; you are watching.")

    watcher.close()
    page.close()
    session = ConsoleSession.objects.get(machine=machine)
    wait_for(lambda: ConsoleSession.objects.filter(pk=session.pk, ended_at__isnull=False).exists(), what="the end")

    replay = login(browser, console_server, "tina")
    replay.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    replay.goto(console_server.url + f"/console-sessions/{session.pk}/")
    replay.click("text=Jump to the end")
    replay.wait_for_selector("[data-cast][data-cast-done=true]")
    assert "eth0 link up" in screen_text(replay)
    assert "theo took the keyboard from tina" in replay.inner_text("[data-cast-markers]")
    replay.screenshot(path=str(SCREENSHOTS / "serial-console-replay.png"))
    assert blocked == []
    assert sol_sim.password not in console_server.log.read_text()


def test_the_demo_console_is_a_little_shell(browser, console_server):
    machine = make_machine(hostname="demo-a-01")
    make_bmc(machine, driver="fake", port=1623)
    user_with_role("technician", "tina")
    page = login(browser, console_server, "tina")
    page.goto(console_server.url + "/machines/demo-a-01/console/")
    page.wait_for_function(
        "() => document.querySelector('.serial-console .xterm-rows').innerText.includes('demo-a-01 login:')"
    )
    page.click(".serial-console .xterm")
    for line in ("tina", "any password", "help", "echo it works"):
        page.keyboard.type(line)
        page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.serial-console .xterm-rows').innerText.includes('it works\\ntina@demo-a-01')"
    )
    assert "any password" not in screen_text(page)
    page.screenshot(path=str(SCREENSHOTS / "serial-console-demo.png"))
