"""Browser tests: Debian's Chromium driven by Playwright against a live daphne and a live RQ worker,
both subprocesses on the test database, so the browser sees exactly what a technician would.

Chromium is launched by path (/usr/bin/chromium from the `chromium` package); no browser is ever
downloaded. Skipped, with the reason, when it is not installed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests import redis_claim

ROOT = Path(__file__).resolve().parents[2]
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        "PROVISIONER_DEV": "1",
        "DEBUG": "0",
        "PROVISIONER_VAR_DIR": str(settings.VAR_DIR),
        "PYTHONUNBUFFERED": "1",
    }


class Server:
    """daphne serving the real ASGI application, restartable (to drop every websocket at once)."""

    def __init__(self, tmp_path: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "daphne.log"
        self.proc = None

    def start(self):
        cmd = [sys.executable, "-m", "provisioner.serve", "-b", "127.0.0.1", "-p", str(self.port)]  # as deployed
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/login/", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"daphne did not start: {self.log.read_text()[-2000:]}")

    def stop(self):
        _stop(self.proc)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RqWorker:
    def __init__(self, tmp_path: Path, site: str):
        self.log = tmp_path / "worker.log"
        self.site = site
        self.proc = None

    def start(self):
        cmd = [sys.executable, "manage.py", "worker", "--site", self.site]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def stop(self):
        _stop(self.proc)


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
    server = Server(tmp_path)
    server.start()
    yield server
    server.stop()
    redis_claim.flush()


def login(browser, server, username: str, *, color_scheme: str = "light"):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=color_scheme)
    page = context.new_page()
    page.goto(server.url + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")
    return page
