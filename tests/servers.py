"""The deployed processes, started for a test against the test database and Redis: daphne through
config.serve, RQ workers and the scheduler (manage.py). Each logs to a file in the test's tmp dir."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis
import snmpsim_data
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
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
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


# -- snmpsim: recorded walks of real PDUs, made writable where the outlets are switched ---------------------

_SNMPSIM_DATA = Path(snmpsim_data.__file__).parent / "data"
#: Recordings shipped by snmpsim-data, by the community (data file name) they are served under.
PDU_RECORDINGS = {
    "apc": _SNMPSIM_DATA / "UPS" / "apc-7902b.snmprec",  # APC AP7902B switched rack PDU, 16 outlets
    "tripplite": _SNMPSIM_DATA / "network" / "appliance" / "tripplite-poweralert.snmprec",  # PDUMH20ATNET, 16
}
PDU_OUTLETS = 16
_APC_RPDU_CONTROL = "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4."
_APC_SPDU_CONTROL = "1.3.6.1.4.1.318.1.1.4.4.2.1.3."
_TRIPPLITE_STATE = "1.3.6.1.4.1.850.1.1.3.4.3.3.1.1.4.1."
_TRIPPLITE_COMMAND = "1.3.6.1.4.1.850.1.1.3.4.3.3.1.1.6.1."


def _oid_key(line: str) -> tuple[int, ...]:
    return tuple(int(part) for part in line.split("|", 1)[0].split("."))


def pdu_recording(name: str, directory: Path, relay_dir: Path) -> Path:
    """The recording of ``name`` with its outlet rows made writable, written to ``directory/<name>.snmprec``.

    APC reads the state from the control object itself, so its rows keep their recorded value under
    snmpsim's writecache (a SET is stored and read back). Tripp Lite's command and state columns go through
    tests/pdu_relay.py, starting from the recorded state."""
    relay = f"{sys.executable} -I {ROOT / 'tests' / 'pdu_relay.py'} {relay_dir}"
    out = []
    for line in PDU_RECORDINGS[name].read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        oid, tag, value = line.split("|", 2)
        if oid.startswith((_APC_RPDU_CONTROL, _APC_SPDU_CONTROL)):
            line = f"{oid}|{tag}:writecache|value={value}"
        elif oid.startswith(_TRIPPLITE_STATE):
            outlet = oid.rsplit(".", 1)[1]
            recorded = re.search(r"initial=(\d)", value)  # recorded under a "numeric" variation
            (relay_dir / outlet).write_text(recorded.group(1) if recorded else value)
            line = f"{oid}|2:subprocess|{relay} state @SETFLAG@ @OID@ @ORIGVALUE@"
        elif oid.startswith(_TRIPPLITE_COMMAND):
            line = f"{oid}|2:subprocess|{relay} command @SETFLAG@ @OID@ @ORIGVALUE@"
        out.append(line)
    out.sort(key=_oid_key)
    path = directory / f"{name}.snmprec"
    path.write_text("\n".join(out) + "\n")
    return path


class Snmpsim:
    """snmpsim-command-responder on 127.0.0.1 serving the PDU recordings: each under its COMMUNITY (v2c), which
    is also its SNMPv3 context name, and to one v3 user with SHA authentication and AES privacy."""

    # Each recording is served under a distinctive community, so a leak into text is easy to spot.
    COMMUNITY = {"apc": "apc-Comm-7Kp", "tripplite": "tl-Comm-3Wd"}
    V3_USER = "provisioner"
    V3_AUTH_KEY = "pdu-auth-key-Kq81"
    V3_PRIV_KEY = "pdu-priv-key-Zt27"

    def __init__(self, tmp_path: Path):
        self.dir = tmp_path / "snmpsim"
        self.data = self.dir / "data"
        self.relays = self.dir / "relays"
        for d in (self.data, self.relays, self.dir / "cache"):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        self.log = self.dir / "snmpsim.log"
        self.proc: subprocess.Popen | None = None

    def start(self):
        for name in PDU_RECORDINGS:
            pdu_recording(name, self.data, self.relays).rename(self.data / f"{self.COMMUNITY[name]}.snmprec")
        responder = Path(sys.executable).parent / "snmpsim-command-responder"
        cmd = [
            str(responder),
            f"--data-dir={self.data}",
            f"--cache-dir={self.dir / 'cache'}",
            f"--agent-udpv4-endpoint=127.0.0.1:{self.port}",
            f"--v3-user={self.V3_USER}",
            "--v3-auth-proto=SHA",
            f"--v3-auth-key={self.V3_AUTH_KEY}",
            "--v3-priv-proto=AES",
            f"--v3-priv-key={self.V3_PRIV_KEY}",
        ]
        # snmpsim refuses to run as root unless told to drop privileges; the tests run as root in CI.
        env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "Listening at UDP" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"snmpsim did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self):
        stop(self.proc)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
