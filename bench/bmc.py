"""Power-status sweep over N simulated BMCs: our IPMI driver against ipmitool per call (the classic approach).

    .venv/bin/python bench/bmc.py [--count 20] [--rounds 5] [--sim lab|ipmi_sim]

The BMCs run in a separate process (lab: the loopback BMC of provisioner.lab.bmc; ipmi_sim: OpenIPMI's
simulator, whose chassis script forks a shell on every status query), so they never compete with the
client for this interpreter. Each approach sweeps all BMCs sequentially and concurrently; the figures are
the median (and worst) sweep total and the median and max single call over all rounds. pyghmi's own synchronous
client is measured too (in a child process of its own), to show the stall our driver avoids.

Then the periodic power sweep as a site's worker runs it (inventory/power_sweep.py, one job for the whole
site): --sweep-count lab BMCs (default 1,000, in their own process, served by one thread), one machine each in
a real PostgreSQL (the database of --database-url is recreated) and Redis (--redis-url, flushed), read by
this one process. Wall and CPU time (every thread of this process: the IPMI loop, pyghmi's IO thread, Django)
of the sweep with fresh logins, as each periodic run has (BMC sessions idle out between runs), and with the
sessions of the run before; and, for comparison, the per-machine job it replaces (refresh_power_state) run
one after another by one worker, on a sample. --sweep-count 0 skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provisioner.bmc import BmcTarget, get_driver  # noqa: E402

USER = "admin"
PASSWORD = "bench-pw"
GOAL_SWEEP_MS = 50
GOAL_RATIO = 10
GOAL_CALL_MS = 100
GOAL_SITE_SWEEP_S = 2.0
GOAL_SITE_SWEEP_CPU_S = 1.0


# -- simulated BMCs -------------------------------------------------------------------------------------------


def serve_lab(count: int) -> None:
    """Child mode: run ``count`` loopback BMCs, print their ports, serve until stdin closes."""
    from provisioner.lab.bmc import LoopbackFleet

    fleet = LoopbackFleet(count, username=USER, password=PASSWORD, powered_on=True).start()
    print(json.dumps([bmc.port for bmc in fleet.bmcs]), flush=True)
    sys.stdin.read()
    fleet.stop()


class LabFleet:
    def __init__(self, count: int):
        command = [sys.executable, __file__, "--serve-lab", str(count)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ports = json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


class IpmiSimFleet:
    SCRIPT = '#!/bin/sh\nshift; [ "$1" = get ] && echo "power:1"\nexit 0\n'

    def __init__(self, count: int):
        import socket

        self.dir = Path(tempfile.mkdtemp(prefix="bench-ipmi-sim-"))
        script = self.dir / "chassis.sh"
        script.write_text(self.SCRIPT)
        script.chmod(0o755)
        (self.dir / "sim.emu").write_text(
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n"
        )
        self.ports, self.processes = [], []
        for index in range(count):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            conf = self.dir / f"lan{index}.conf"
            conf.write_text(
                f'name "bench{index}"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n'
                "    priv_limit admin\n    guid a123456789abcdefa123456789abcdef\n  endlan\n"
                f'  chassis_control "{script} 0x20"\n'
                f'  user 2 true "{USER}" "{PASSWORD}" admin 10 none md2 md5 straight\n'
            )
            state = self.dir / f"state{index}"
            state.mkdir()
            self.processes.append(
                subprocess.Popen(
                    ["ipmi_sim", "-c", str(conf), "-f", str(self.dir / "sim.emu"), "-n", "-s", str(state)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            self.ports.append(port)
        time.sleep(0.5)

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- the approaches -------------------------------------------------------------------------------------------


def driver_call(port: int):
    driver = get_driver("ipmi", BmcTarget("127.0.0.1", port, USER, PASSWORD, timeout_s=2))
    return driver.power_state


def ipmitool_call(port: int):
    command = ["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(port), "-U", USER, "-E"]
    command += ["chassis", "power", "status"]
    env = {**os.environ, "IPMI_PASSWORD": PASSWORD}

    def call():
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
        if "Chassis Power is" not in result.stdout:
            raise RuntimeError(result.stderr.strip())

    return call


def pyghmi_sync_child(ports: list[int], rounds: int) -> None:
    """Child mode: pyghmi's synchronous session API, one thread per BMC, as most callers use it."""
    from pyghmi.ipmi.private import session

    sessions = [session.Session("127.0.0.1", USER.encode(), PASSWORD.encode(), port=p, privlevel=3) for p in ports]
    calls = [lambda s=s: s.raw_command(netfn=0, command=1) for s in sessions]
    print(json.dumps(sweep(calls, rounds, concurrent=True)), flush=True)


def sweep(calls, rounds: int, concurrent: bool) -> dict:
    durations: list[float] = []
    totals: list[float] = []
    lock = threading.Lock()

    def timed(call):
        started = time.perf_counter()
        call()
        elapsed = time.perf_counter() - started
        with lock:
            durations.append(elapsed)

    pool = ThreadPoolExecutor(len(calls)) if concurrent else None
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            if pool is not None:
                list(pool.map(timed, calls))
            else:
                for call in calls:
                    timed(call)
            totals.append(time.perf_counter() - started)
    finally:
        if pool is not None:
            pool.shutdown()
    return {
        "total_ms": statistics.median(totals) * 1000,
        "worst_total_ms": max(totals) * 1000,
        "median_ms": statistics.median(durations) * 1000,
        "max_ms": max(durations) * 1000,
    }


def line(label: str, figures: dict) -> str:
    return (
        f"  {label:<31} sweep {figures['total_ms']:7.1f} ms (worst {figures['worst_total_ms']:7.1f})   "
        f"call median {figures['median_ms']:6.2f} ms, max {figures['max_ms']:7.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="number of simulated BMCs (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="sweeps per figure (default 5)")
    parser.add_argument("--sim", choices=("lab", "ipmi_sim"), default="lab", help="which simulated BMCs")
    parser.add_argument("--sweep-count", type=int, default=1000, help="lab BMCs of the site sweep (0: skip it)")
    parser.add_argument("--sweep-rounds", type=int, default=3, help="site sweeps per figure (default 3)")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/provisioner_bench_bmc", help="recreated"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12", help="flushed")
    parser.add_argument("--serve-lab", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pyghmi-sync", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_lab:
        serve_lab(args.serve_lab)
        return 0
    if args.pyghmi_sync:
        pyghmi_sync_child(json.loads(args.pyghmi_sync), args.rounds)
        return 0

    code = driver_comparison(args)
    if args.sweep_count:
        code |= site_sweep(args)
    return code


def driver_comparison(args) -> int:
    fleet = LabFleet(args.count) if args.sim == "lab" else IpmiSimFleet(args.count)
    try:
        ports = fleet.ports
        print(f"power-status sweep over {len(ports)} {args.sim} BMCs on 127.0.0.1, {args.rounds} rounds each")
        driver_calls = [driver_call(port) for port in ports]
        cold = sweep(driver_calls, 1, concurrent=True)
        print(line("driver, first sweep (logins)", cold))
        driver_seq = sweep(driver_calls, args.rounds, concurrent=False)
        print(line("driver, sequential", driver_seq))
        driver_par = sweep(driver_calls, args.rounds, concurrent=True)
        print(line("driver, concurrent", driver_par))
        tool_calls = [ipmitool_call(port) for port in ports]
        tool_seq = sweep(tool_calls, max(1, args.rounds // 2), concurrent=False)
        print(line("ipmitool per call, sequential", tool_seq))
        tool_par = sweep(tool_calls, args.rounds, concurrent=True)
        print(line("ipmitool per call, concurrent", tool_par))
        child = subprocess.run(
            [sys.executable, __file__, "--pyghmi-sync", json.dumps(ports), "--rounds", str(args.rounds * 4)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if child.returncode == 0:
            print(line("pyghmi sync API, concurrent", json.loads(child.stdout)))
        else:
            print(f"  pyghmi sync API, concurrent: failed: {child.stderr.strip().splitlines()[-1:]}")
    finally:
        fleet.close()

    seq_ratio = tool_seq["total_ms"] / driver_seq["total_ms"]
    par_ratio = tool_par["total_ms"] / driver_par["total_ms"]
    print(f"  ratio ipmitool/driver: sequential {seq_ratio:.1f}x, concurrent {par_ratio:.1f}x")
    worst_call = max(driver_seq["max_ms"], driver_par["max_ms"])
    checks = [
        (f"concurrent sweep <= {GOAL_SWEEP_MS} ms", driver_par["worst_total_ms"] <= GOAL_SWEEP_MS),
        (f">= {GOAL_RATIO}x faster than concurrent ipmitool", par_ratio >= GOAL_RATIO),
        (f"no call over {GOAL_CALL_MS} ms (warm)", worst_call <= GOAL_CALL_MS),
    ]
    for label, ok in checks:
        print(f"  goal: {label}: {'met' if ok else 'MISSED'}")
    return 0 if all(ok for _, ok in checks) else 1


# -- the periodic site sweep -----------------------------------------------------------------------------------


def _django(args) -> None:
    import psycopg

    base, _, name = args.database_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ.update(
        {
            "PROVISIONER_DEV": "1",
            "DEBUG": "0",
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "LOG_LEVEL": "WARNING",
            "PROVISIONER_VAR_DIR": str(ROOT / "var" / "bench"),
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from core import queues

    queues.connection().flushdb()


def _timed(run) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def site_sweep(args) -> int:
    _django(args)
    from django.conf import settings

    from inventory import power, power_sweep
    from inventory.models import BMC, NIC, Machine, Rack, Site
    from provisioner.bmc import close_sessions

    count = args.sweep_count
    fleet = LabFleet(count)
    try:
        site = Site.objects.create(slug="bench", name="Bench", tftp_root="/srv/tftp", base_url="http://127.0.0.1")
        site.bmc_username = USER
        site.set_bmc_password(PASSWORD)
        site.save()
        machines = []
        for r in range(0, count, 40):
            rack = Rack.objects.create(site=site, name=f"r{r // 40:03d}", height_u=40)
            machines += Machine.objects.bulk_create(
                Machine(hostname=f"bench-{i:05d}", rack=rack, position_u=i - r + 1)
                for i in range(r, min(r + 40, count))
            )
        NIC.objects.bulk_create(
            NIC(machine=m, mac=f"52:54:00:00:{i >> 8:02x}:{i & 255:02x}", is_pxe=True) for i, m in enumerate(machines)
        )
        # Half with their own credentials, half with the site's defaults: both paths are in the sweep.
        rows = []
        for i, (machine, port) in enumerate(zip(machines, fleet.ports, strict=True)):
            row = BMC(machine=machine, driver="ipmi", address="127.0.0.1", port=port, username=USER if i % 2 else "")
            if i % 2:
                row.set_password(PASSWORD)
            rows.append(row)
        BMC.objects.bulk_create(rows)
        print(f"site power sweep: {count} lab BMCs (one process, one thread), one worker process reading them")
        figures = []
        for label, fresh in (("fresh logins (each periodic run)", True), ("sessions kept from the run before", False)):
            walls, cpus = [], []
            for _ in range(args.sweep_rounds):
                # Periodic runs are minutes apart: let the guard's per-BMC pause of the run before expire.
                time.sleep(settings.BMC_MIN_INTERVAL_S + 0.05)
                if fresh:
                    close_sessions(timeout_s=10)
                wall, cpu, summary = _timed(lambda: power_sweep.sweep_site("bench"))
                if not summary.startswith(f"bench: {count} read, 0 failed"):
                    print(f"  sweep incomplete: {summary}")
                walls.append(wall)
                cpus.append(cpu)
            figures.append((label, max(walls), max(cpus)))
            print(
                f"  {label:<36} wall {statistics.median(walls):6.2f} s (worst {max(walls):5.2f})   "
                f"CPU {statistics.median(cpus):5.2f} s (worst {max(cpus):5.2f})"
            )
        states = set(Machine.objects.values_list("power_state", flat=True))
        print(f"  power states stored: {sorted(states)}")
        sample = machines[: min(100, count)]
        close_sessions(timeout_s=10)
        wall, cpu, _ = _timed(lambda: [power.refresh_power_state(m.pk) for m in sample])
        print(
            f"  before: one refresh_power_state job per machine, {len(sample)} run one after another: "
            f"{wall:.2f} s wall, {cpu:.2f} s CPU -> {count} machines ~{wall * count / len(sample):.1f} s wall, "
            f"~{cpu * count / len(sample):.1f} s CPU (RQ's own cost per job not included)"
        )
    finally:
        close_sessions(timeout_s=10)
        fleet.close()
    worst_wall = figures[0][1]
    worst_cpu = figures[0][2]
    checks = [
        (f"site sweep of {count} BMCs <= {GOAL_SITE_SWEEP_S:g} s wall (fresh logins)", worst_wall <= GOAL_SITE_SWEEP_S),
        (
            f"site sweep of {count} BMCs <= {GOAL_SITE_SWEEP_CPU_S:g} s CPU (fresh logins)",
            worst_cpu <= GOAL_SITE_SWEEP_CPU_S,
        ),
    ]
    for label, ok in checks:
        print(f"  goal: {label}: {'met' if ok else 'MISSED'}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
