"""Browser tests: Debian's Chromium driven by Playwright against a live daphne and a live RQ worker,
both subprocesses on the test database, so the browser sees exactly what a technician would.

Chromium is launched by path (/usr/bin/chromium from the `chromium` package); no browser is ever
downloaded. Skipped, with the reason, when it is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.management import call_command

from tests import redis_claim
from tests.servers import ROOT, Daphne

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "var" / "screenshots"
PASSWORD = "correct horse battery staple"

# Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make between
# browser steps are plain blocking calls, which Django would otherwise refuse next to a loop.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def live(transactional_db, tmp_path):
    redis_claim.flush()
    server = Daphne(tmp_path)
    server.start()
    yield server
    server.stop()
    redis_claim.flush()


def login(browser, server, username: str, *, color_scheme: str = "light", viewport=None, **context_args):
    """A new browser context logged in as username: 1280×800 unless given another viewport (a tablet's, with
    is_mobile and has_touch among context_args)."""
    viewport = viewport or {"width": 1280, "height": 800}
    context = browser.new_context(viewport=viewport, color_scheme=color_scheme, **context_args)
    page = context.new_page()
    page.goto(server.url + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")
    return page


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def lab_running(server, tmp_path: Path, machines: list[dict], *, install_s: float = 0.5):
    """The simulated datacentre (python -m provisioner.lab) with these machines, reaching ``server``, and its
    inventory loaded as `make run` loads it; stopped (every machine and BMC with it) at the end."""
    config = tmp_path / "lab.json"
    config.write_text(json.dumps({"machines": machines}))
    state = tmp_path / "lab"
    log = tmp_path / "lab.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provisioner.lab",
            "--config",
            str(config),
            "--state-dir",
            str(state),
            "--base-url",
            server.url,
            "--install-s",
            str(install_s),
        ],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        inventory = state / "inventory.json"
        wait_for(lambda: inventory.exists() or proc.poll() is not None, what="the lab")
        assert proc.poll() is None, log.read_text()
        with open(os.devnull, "w") as quiet:
            call_command("load_demo", "--lab-inventory", str(inventory), stdout=quiet)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
