"""A technician opens a deployed machine's terminal in Chromium (xterm.js over the websocket, daphne, the
bastion and a target sshd that trusts the site's CA), runs ``hostname``, sees the answer, closes the session,
and replays its recording with asciinema-player: the same text, under the page's Content-Security-Policy."""

from __future__ import annotations

import socket

import pytest

from access.models import ShellSession
from inventory.models import MachineStatus
from tests import redis_claim
from tests.integration.access.conftest import add_shell_target, lab, shell_lab, shell_site  # noqa: F401 - fixtures
from tests.integration.ui.conftest import user_with_role
from tests.servers import Daphne

from .conftest import SCREENSHOTS, login
from .test_live_install import wait_for

HOSTNAME = socket.gethostname()


@pytest.fixture
def terminal_server(transactional_db, tmp_path, settings):
    settings.SSH_RECORDING_DIR = tmp_path / "ssh"
    redis_claim.flush()
    server = Daphne(tmp_path, SSH_RECORDING_DIR=str(tmp_path / "ssh"), SSH_CONNECT_TIMEOUT_S="5")
    server.start()
    yield server
    server.stop()
    redis_claim.flush()


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def answer_shown(page) -> None:
    """``hostname``'s answer on a line of its own (the prompt holds the name too)."""
    page.wait_for_function(
        "name => document.querySelector('.ssh-terminal .xterm-rows').innerText.split('\\n')"
        ".some(line => line.trim() === name)",
        arg=HOSTNAME,
    )


def test_run_hostname_in_the_terminal_then_replay_it(browser, terminal_server, shell_site, shell_lab):  # noqa: F811
    add_shell_target(shell_site, shell_lab, hostname="web-01", status=MachineStatus.DEPLOYED)
    user_with_role("technician", "tina")
    blocked = []

    page = login(browser, terminal_server, "tina", color_scheme="dark")
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(terminal_server.url + "/machines/web-01/")
    page.click("text=Open a terminal")
    page.wait_for_selector("text=Connected. Everything shown and typed is recorded.")
    page.click(".ssh-terminal .xterm")
    page.keyboard.type("hostname")
    page.keyboard.press("Enter")
    answer_shown(page)
    page.screenshot(path=str(SCREENSHOTS / "ssh-terminal.png"))
    page.click("text=Close the session")
    page.wait_for_selector("text=The session ended: closed by the user.")
    assert blocked == []

    session = ShellSession.objects.get()
    assert session.end_reason == "closed" and HOSTNAME in session.transcript
    assert session.cast_path.exists()
    page.click("[data-terminal-replay]")
    page.wait_for_url(terminal_server.url + f"/ssh-sessions/{session.pk}/")
    page.click("text=Jump to the end")
    page.wait_for_selector("[data-replay][data-replay-done=true]")
    wait_for(lambda: HOSTNAME in lines(page.inner_text(".ssh-replay")), timeout=10, what="the replayed answer")
    assert any(
        line.endswith("# hostname") or line.endswith("$ hostname") for line in lines(page.inner_text(".ssh-replay"))
    )
    page.screenshot(path=str(SCREENSHOTS / "ssh-replay.png"))
    assert blocked == []


def test_stopping_the_web_process_ends_its_sessions_as_shutdown(browser, terminal_server, shell_site, shell_lab):  # noqa: F811
    add_shell_target(shell_site, shell_lab, hostname="web-02", status=MachineStatus.DEPLOYED)
    user_with_role("technician", "tina")
    page = login(browser, terminal_server, "tina")
    page.goto(terminal_server.url + "/machines/web-02/terminal/")
    page.wait_for_selector("text=Connected. Everything shown and typed is recorded.")
    terminal_server.stop()
    session = ShellSession.objects.get()
    assert session.end_reason == "shutdown" and session.end_message == "the web process stopped"
    assert session.cast_path.exists()
