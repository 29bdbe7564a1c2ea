"""Power-status sweep over N simulated BMCs: our IPMI driver against ipmitool per call (the classic approach).

    .venv/bin/python bench/bmc.py [--count 20] [--rounds 5] [--sim lab|ipmi_sim]

The BMCs run in a separate process (lab: the loopback BMC of provisioner.lab.bmc; ipmi_sim: OpenIPMI's
simulator, whose chassis script forks a shell on every status query), so they never compete with the
client for this interpreter. Each approach sweeps all BMCs sequentially and concurrently; the figures are
the median (and worst) sweep total and the median and max single call over all rounds. pyghmi's own synchronous
client is measured too (in a child process of its own), to show the stall our driver avoids.
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


# -- simulated BMCs -------------------------------------------------------------------------------------------


def serve_lab(count: int) -> None:
    """Child mode: run ``count`` loopback BMCs, print their ports, serve until stdin closes."""
    from provisioner.lab.bmc import start_loopback_bmcs

    bmcs = start_loopback_bmcs(count, username=USER, password=PASSWORD, powered_on=True)
    print(json.dumps([bmc.port for bmc in bmcs]), flush=True)
    sys.stdin.read()
    for bmc in bmcs:
        bmc.stop()


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
    parser.add_argument("--serve-lab", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pyghmi-sync", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_lab:
        serve_lab(args.serve_lab)
        return 0
    if args.pyghmi_sync:
        pyghmi_sync_child(json.loads(args.pyghmi_sync), args.rounds)
        return 0

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


if __name__ == "__main__":
    sys.exit(main())
