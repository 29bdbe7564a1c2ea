"""The deployed process layout, started and kept alive as the systemd units do.

Every process runs in a session of its own, so a signal reaches its whole process group and nothing is left
behind. A supervised process that dies is started again after RESTART_S (Restart=always, RestartSec=2), whether
the soak killed it or it died by itself; only the second kind counts as an unexpected exit.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
RESTART_S = 2.0  # the units' RestartSec
STOP_TIMEOUT_S = 15.0


def stamp() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]


def say(message: str) -> None:
    print(f"[soak {stamp()}] {message}", flush=True)


@dataclass
class Exit:
    name: str
    pid: int
    code: int
    at: float  # time.monotonic()
    deliberate: bool


@dataclass
class Service:
    """One unit: its command line, its log, and whether it comes back after it dies."""

    name: str
    argv: list[str]
    restart: bool = True
    on_line: Callable[[str, str], None] | None = None  # (service name, line) for every line it prints
    proc: subprocess.Popen | None = None
    starts: int = 0
    restart_at: float | None = None
    deliberate: bool = False  # the soak signalled it: its exit is a fault, not a failure
    reader: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, env: dict, log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.services: dict[str, Service] = {}
        self.exits: list[Exit] = []
        self.lock = threading.RLock()
        self.stopping = False
        self._watcher = threading.Thread(target=self._watch, name="soak-supervisor", daemon=True)
        self._watcher.start()

    def start(self, name: str, argv: list[str], *, restart: bool = True, on_line=None) -> Service:
        with self.lock:
            service = Service(name, argv, restart=restart, on_line=on_line)
            self.services[name] = service
            self._spawn(service)
            return service

    def _spawn(self, service: Service) -> None:
        service.starts += 1
        service.deliberate = False
        service.restart_at = None
        log = open(self.log_dir / f"{service.name}.log", "a", buffering=1)
        log.write(f"--- {stamp()} start #{service.starts}: {' '.join(service.argv)}\n")
        service.proc = subprocess.Popen(
            service.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, text=True, errors="replace",
        )  # fmt: skip
        service.reader = threading.Thread(
            target=self._read, args=(service, service.proc, log), name=f"soak-{service.name}", daemon=True
        )
        service.reader.start()

    @staticmethod
    def _read(service: Service, proc: subprocess.Popen, log) -> None:
        with log:
            for line in proc.stdout:
                log.write(f"{stamp()} {line}")
                if service.on_line is not None:
                    service.on_line(service.name, line.rstrip("\n"))

    def _watch(self) -> None:
        while True:
            time.sleep(0.2)
            with self.lock:
                if self.stopping:
                    return
                now = time.monotonic()
                for service in self.services.values():
                    proc = service.proc
                    if service.restart_at is None and proc is not None and proc.poll() is not None:
                        self.exits.append(Exit(service.name, proc.pid, proc.returncode, now, service.deliberate))
                        if not service.deliberate:
                            say(f"{service.name} (pid {proc.pid}) exited by itself with status {proc.returncode}")
                        _kill_group(proc.pid, signal.SIGKILL)  # whatever it left in its group
                        if service.restart:
                            service.restart_at = now + RESTART_S
                    if service.restart_at is not None and now >= service.restart_at:
                        self._spawn(service)

    def signal(self, name: str, sig: int) -> int:
        """Send ``sig`` to the service's process group, as a fault; returns the pid it reached."""
        with self.lock:
            service = self.services[name]
            service.deliberate = True
            pid = service.proc.pid
            _kill_group(pid, sig)
            return pid

    def pid(self, name: str) -> int | None:
        service = self.services.get(name)
        return service.proc.pid if service and service.proc and service.proc.poll() is None else None

    def unexpected_exits(self) -> list[Exit]:
        return [e for e in self.exits if not e.deliberate]

    def stop(self) -> None:
        """Everything stops, last started first (the workers still need Redis while they stop)."""
        with self.lock:
            self.stopping = True
        for service in reversed(list(self.services.values())):
            proc = service.proc
            if proc is None:
                continue
            if proc.poll() is None:
                _kill_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    say(f"{service.name} did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM: SIGKILL")
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
            if service.reader is not None:
                service.reader.join(timeout=5)


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {seconds:.0f} s")


# --- the environment: production mode, as /etc/provisioner/provisioner.env gives it -----------------------


def production_env(database_url: str, redis_url: str, state: Path, deadlines: dict[str, int]) -> dict:
    """Production settings (no PROVISIONER_DEV, DEBUG off, secrets generated for the run). Plain HTTP on
    loopback stands in for nginx: the soak's own requests say X-Forwarded-Proto: https as nginx would."""
    from cryptography.fernet import Fernet

    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "PROVISIONER_FIELD_KEYS": Fernet.generate_key().decode(),
            "DATABASE_URL": database_url,
            "DATABASE_POOL_MAX": "10",  # as provisioner.env.example
            "REDIS_URL": redis_url,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PROVISIONER_VAR_DIR": str(state / "var"),
            "STATIC_ROOT": str(state / "static"),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
            **{k: str(v) for k, v in deadlines.items()},
        }
    )
    return env


def manage(env: dict, *args: str, log: Path) -> None:
    with open(log, "a") as out:
        subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=out, stderr=out)


def recreate_database(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_argv(socket_path: Path, state: Path) -> list[str]:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    # No persistence: a restart loses everything, the harsh case (PostgreSQL is the truth).
    return [
        server, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--dir", str(state), "--logfile", "",
    ]  # fmt: skip


# --- the lab -------------------------------------------------------------------------------------------------

#: Machines with a deliberate fault, and what their installs must end in.
FAULTY = {
    "soak-badpass": ("bmc_rejects_credentials", "BmcAuthError"),
    "soak-smalldisk": ("disk_too_small", "ImageTooLarge"),
    "soak-silent": ("installer_silent", "InstallerTimeout"),
}
IDLE_MACHINE = "soak-idle"  # its one install is cancelled at once; a socket watches it, idle, the whole run


def lab_config(racks: int, per_rack: int) -> dict:
    machines = []
    for r in range(1, racks + 1):
        for i in range(1, per_rack + 1):
            machines.append(
                {
                    "hostname": f"soak-r{r}-{i:02d}",
                    "rack": f"r{r}",
                    "position_u": 2 * i - 1,
                    "macs": [f"52:54:00:5a:{r:02x}:{i:02x}"],
                    "firmware": "uefi" if i % 2 == 0 else "bios",
                }
            )
    extra = [*FAULTY, IDLE_MACHINE]
    for n, hostname in enumerate(extra, start=1):
        faults = [FAULTY[hostname][0]] if hostname in FAULTY else []
        machines.append(
            {
                "hostname": hostname,
                "rack": "r0",
                "position_u": 2 * n - 1,
                "macs": [f"52:54:00:5a:00:{n:02x}"],
                "firmware": "bios",
                "faults": faults,
            }
        )
    return {"site": "lab", "machines": machines}


def write_lab_config(path: Path, racks: int, per_rack: int) -> None:
    path.write_text(json.dumps(lab_config(racks, per_rack), indent=2) + "\n")
