"""Benchmark the install engine: N machines with fake BMCs, a simulated agent that answers at once,
real PostgreSQL, Redis and W RQ worker processes.

    .venv/bin/python bench/installs.py --machines 200 --workers 2

It uses its own database (provisioner_bench, recreated) and Redis database 12 (flushed). The last
line is machine-readable:
    installs=N succeeded=S failed=F stuck=K wall_s=... cpu_ms_per_step=... p95_step_latency_ms=...
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_env(args) -> dict:
    env = {
        **os.environ,
        "PROVISIONER_DEV": "1",
        "DEBUG": "0",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "BMC_MIN_INTERVAL_S": "0",
        "LOG_LEVEL": "WARNING",
        "PROVISIONER_VAR_DIR": str(ROOT / "var" / "bench"),
    }
    os.environ.update(env)
    return env


def recreate_database(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def build_site(n: int, tftp_root: str):
    from inventory.models import BMC, NIC, Machine, OSProfile, Rack, Site

    site = Site.objects.create(slug="bench", name="Bench", tftp_root=tftp_root, base_url="http://127.0.0.1:8000")
    profile = OSProfile.objects.create(
        name="bench-image",
        method="image",
        kernel="/memory-os/vmlinuz",
        initrd="/memory-os/initrd.img",
        image_url="http://127.0.0.1:8000/images/bench.img.gz",
        image_sha256="ab" * 32,
    )
    per_rack = 40
    racks = [
        Rack.objects.create(site=site, name=f"r{r:03d}", height_u=42) for r in range((n + per_rack - 1) // per_rack)
    ]
    machines = Machine.objects.bulk_create(
        Machine(hostname=f"bench-{i:05d}", rack=racks[i // per_rack], position_u=1 + i % per_rack, status="ready")
        for i in range(n)
    )
    NIC.objects.bulk_create(
        NIC(machine=m, mac=f"52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}", is_pxe=True)
        for i, m in enumerate(machines)
    )
    bmcs = [
        BMC(machine=m, driver="fake", address=f"127.1.{i >> 8 & 255}.{i & 255}", username="admin")
        for i, m in enumerate(machines)
    ]
    for b in bmcs:
        b.set_password("bench")
    BMC.objects.bulk_create(bmcs)
    return site, profile, machines


class SimulatedAgents(threading.Thread):
    """Plays every machine's agent and installed OS through the same service functions the HTTP API
    calls: register as soon as the install waits for boot, run each task at once, call back at first boot."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.calls = 0

    def run(self):
        from django.db import connection

        from installs.models import ACTIVE_STATES, Install
        from tests.simulated_machines import answer_waiting

        try:
            while not self.stop.is_set():
                calls = answer_waiting()
                self.calls += calls
                if not calls:
                    if not Install.objects.filter(state__in=ACTIVE_STATES).exists():
                        return
                    time.sleep(0.05)
        finally:
            connection.close()


def start_real_lab(n: int, env: dict, helpers: list):
    """daphne for the machine-facing API, and a lab of n machines that reach it (docs/lab.md)."""
    import json
    import socket
    import urllib.request

    from django.core.management import call_command

    from inventory.models import Machine, OSProfile

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    popen = {
        "cwd": ROOT,
        "env": env,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "start_new_session": True,
    }
    helpers.append(
        subprocess.Popen([sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port)], **popen)
    )
    state = Path(tempfile.mkdtemp(prefix="bench-lab-"))
    machines = [
        {
            "hostname": f"bench-r{i // 40:02d}-{i % 40 + 1:02d}",
            "rack": f"r{i // 40:02d}",
            "position_u": i % 40 + 1,
            "macs": [f"52:54:02:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"],
        }
        for i in range(n)
    ]
    (state / "config.json").write_text(json.dumps({"machines": machines}))
    helpers.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provisioner.lab",
                "--config",
                str(state / "config.json"),
                "--state-dir",
                str(state / "lab"),
                "--base-url",
                base_url,
                "--site",
                "bench",
                "--install-s",
                "0.1",
            ],
            **popen,
        )
    )
    inventory = state / "lab" / "inventory.json"
    deadline = time.monotonic() + 120
    while not inventory.exists():
        if time.monotonic() > deadline or any(h.poll() is not None for h in helpers):
            raise SystemExit("the lab or daphne did not start")
        time.sleep(0.2)
    while True:
        try:
            urllib.request.urlopen(base_url + "/login/", timeout=2).close()
            break
        except OSError:
            time.sleep(0.2)
    call_command("load_demo", "--lab-inventory", str(inventory), stdout=open(os.devnull, "w"))
    profile = OSProfile.objects.get(name="lab-demo-image")
    from inventory.models import Site

    return Site.objects.get(slug="bench"), profile, list(Machine.objects.filter(rack__site__slug="bench"))


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fork", action="store_true", help="Forking RQ workers instead of SimpleWorker.")
    parser.add_argument("--timeout", type=float, default=600, help="Give up (and count what is left as stuck).")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/provisioner_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument(
        "--real-agent",
        action="store_true",
        help="The simulated datacentre instead: real IPMI BMCs on loopback, machines that PXE-boot the real agent "
        "program (one process each), which talks to a live daphne.",
    )
    args = parser.parse_args()

    env = setup_env(args)
    recreate_database(args.database_url)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from audit.service import Actor
    from core import queues
    from installs.batches import request_installs
    from installs.models import ACTIVE_STATES, Install, InstallState, Step

    queues.connection().flushdb()
    helpers: list[subprocess.Popen] = []
    if args.real_agent:
        site, profile, machines = start_real_lab(args.machines, env, helpers)
    else:
        site, profile, machines = build_site(args.machines, tempfile.mkdtemp(prefix="bench-tftp-"))

    argv = [sys.executable, "manage.py", "worker", "--site", site.slug, "--no-default"] + (
        ["--fork"] if args.fork else []
    )
    workers = [
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        for cmd in [argv] * args.workers + [[sys.executable, "manage.py", "scheduler"]]
    ]
    time.sleep(1.0)  # let the workers import Django before the clock starts
    started = time.monotonic()
    request_installs(
        [m.pk for m in machines],
        profile,
        Actor.system("bench"),
        max_per_site=args.machines,
        max_per_rack=args.machines,
        stagger_s=0,
    )
    agents = SimulatedAgents()
    if not args.real_agent:
        agents.start()
    deadline = started + args.timeout
    while time.monotonic() < deadline and Install.objects.filter(state__in=ACTIVE_STATES).exists():
        time.sleep(0.2)
    wall = time.monotonic() - started
    agents.stop.set()
    for w in workers + helpers:
        os.killpg(w.pid, signal.SIGTERM)
    for w in workers + helpers:
        w.wait(timeout=60)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = (cpu.ru_utime + cpu.ru_stime) * 1000

    counts = {s: Install.objects.filter(state=s).count() for s in ("succeeded", "failed")}
    stuck = Install.objects.filter(state__in=ACTIVE_STATES).count()
    worker_steps = Step.objects.filter(state="succeeded").exclude(kind__in=["wait_boot", "agent_task"]).count()
    latencies = []
    for _install_id, rows in _steps_by_install():
        for prev, step in zip(rows, rows[1:], strict=False):
            if prev[1] and step[0]:
                latencies.append((step[0] - prev[1]).total_seconds() * 1000)
    failures = list(Install.objects.filter(state=InstallState.FAILED).values_list("failure_reason", flat=True)[:5])
    if failures:
        print(f"first failure reasons: {failures}")
    print(
        f"workers={args.workers} ({'Worker' if args.fork else 'SimpleWorker'}) worker_steps={worker_steps} "
        f"agent_calls={agents.calls} worker_cpu_ms={cpu_ms:.0f}"
    )
    print(
        f"installs={args.machines} succeeded={counts['succeeded']} failed={counts['failed']} stuck={stuck} "
        f"wall_s={wall:.1f} cpu_ms_per_step={cpu_ms / max(1, worker_steps):.2f} "
        f"p95_step_latency_ms={percentile(latencies, 95):.0f}"
    )
    return 0 if stuck == 0 and counts["failed"] == 0 else 1


def _steps_by_install():
    from installs.models import Step

    rows: dict[int, list] = {}
    for install_id, started_at, finished_at in Step.objects.order_by("install_id", "order").values_list(
        "install_id", "started_at", "finished_at"
    ):
        rows.setdefault(install_id, []).append((started_at, finished_at))
    return rows.items()


if __name__ == "__main__":
    sys.exit(main())
