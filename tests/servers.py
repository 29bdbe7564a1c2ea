"""The deployed processes, started for a test against the test database and Redis: daphne through
config.serve, RQ workers and the scheduler (manage.py). Each logs to a file in the test's tmp dir."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(**extra: str) -> dict:
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
        **extra,
    }


def stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Daphne:
    """daphne serving the real ASGI application as deployed, restartable (to drop every websocket at once)."""

    def __init__(self, tmp_path: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "daphne.log"
        self.env = env
        self.proc = None

    def start(self):
        cmd = [sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=process_env(**self.env), stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
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
        stop(self.proc)


class ControlPlane:
    """The scheduler and an RQ worker for a site's queue (and the default one), as deployed."""

    def __init__(self, tmp_path: Path, site: str, **env: str):
        self.log = tmp_path / "worker.log"
        self.site = site
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def start(self):
        for argv in (["scheduler"], ["worker", "--site", self.site]):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", *argv],
                    cwd=ROOT,
                    env=process_env(**self.env),
                    stdout=self.log.open("ab"),
                    stderr=subprocess.STDOUT,
                )
            )

    def stop(self):
        for proc in reversed(self.procs):
            stop(proc)
        self.procs = []


class PrivateRedis:
    """A redis-server of the test's own on a unix socket, so the test can restart it (nothing kept on
    disk: a restart loses everything, the harsh case)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.url = self.url_for(0)
        self.proc: subprocess.Popen | None = None
        self.clients: list[redis.Redis] = []

    def url_for(self, db: int) -> str:
        return f"unix://{self.socket}?db={db}"

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not self.up():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        for conn in self.clients:
            conn.close()
        self.clients = []
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def client(self, db: int = 0) -> redis.Redis:
        conn = redis.Redis.from_url(self.url_for(db))
        self.clients.append(conn)
        return conn

    def up(self) -> bool:
        try:
            with redis.Redis.from_url(self.url) as conn:
                return bool(conn.ping())
        except (redis.ConnectionError, OSError):
            return False
