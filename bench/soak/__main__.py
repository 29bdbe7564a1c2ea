"""A soak of the deployed process layout with faults: `make soak` (10 minutes), `make soak-short` (CI).

    .venv/bin/python -m bench.soak [--minutes 10] [--keep-database]

Starts the production layout (daphne through config.serve, the scheduler, the control worker, the lab
site's worker, the lab) on a fresh PostgreSQL database and a private
redis-server, under a supervisor that restarts what dies as the systemd units do. For the set duration it
requests installs on the lab (some that must fail: wrong BMC password, disk too small, an installer that
never calls back), keeps websockets open (one idle, the dashboard, one per some installs), and injects
faults (a worker SIGKILLed every minute, one Redis restart, one PostgreSQL backend termination, one daphne
restart). Then it waits for the installs to end and reports. The last line is one JSON object; the exit
status is 1 when a goal figure is missed (README, Soak, says how to read it). Logs: var/soak/logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import report
from .api import Api, healthz
from .driver import IMAGE_PROFILE, Stream
from .faults import FaultPlan, Injector
from .periodic import HealthWatch, PeriodicWatch
from .sockets import LiveSocket
from .stack import (
    FAULTY,
    IDLE_MACHINE,
    PYTHON,
    ROOT,
    Supervisor,
    drop_database,
    manage,
    production_env,
    recreate_database,
    redis_argv,
    say,
    wait_for,
    write_lab_config,
)

# Deadlines shortened so that a fault's consequence shows within the run (production: minutes to an hour).
DEADLINES = {
    "INSTALL_BOOT_DEADLINE_S": 60,
    "INSTALL_INSTALLER_DEADLINE_S": 60,
    "INSTALL_AGENT_TASK_DEADLINE_S": 60,
    "INSTALL_VERIFY_DEADLINE_S": 60,
    "AGENT_HEARTBEAT_S": 10,
    "AGENT_SILENCE_S": 45,
    "STEP_RUN_TIMEOUT_S": 30,
    "STEP_RETRY_MAX_S": 20,
    "SWEEP_INTERVAL_S": 15,
    "POWER_SYNC_INTERVAL_S": 30,
}
# After the stream: the longest wait (a deadline), two sweeps, a lost worker's step, and some slack.
DRAIN_LIMIT_S = (
    max(v for k, v in DEADLINES.items() if k.startswith("INSTALL_"))
    + 2 * DEADLINES["SWEEP_INTERVAL_S"]
    + DEADLINES["STEP_RUN_TIMEOUT_S"]
    + 30
)
# No install that must end by its deadline is requested this close to the end of the stream.
DEADLINE_FAULT_CUTOFF_S = 90
# Consumers sweep the database for dropped messages every 5 s when idle: give them one more round.
SETTLE_S = 8
LAB_INSTALL_S = 3  # a simulated installer's run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def truth(env: dict, *args: str, asked: dict | None = None) -> dict:
    """Run bench/soak/truth.py in a Django process of its own and return what it printed."""
    out = subprocess.run(
        [PYTHON, "-m", "bench.soak.truth", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        input=json.dumps(asked) if asked is not None else None,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


async def idle_install(api: Api) -> tuple[int, int]:
    """An install on the idle machine, cancelled at once: its socket has nothing to say for the whole run."""
    started = await api.acall("POST", "/api/v1/installs", {"machines": [IDLE_MACHINE], "profile": IMAGE_PROFILE})
    (install,) = started["results"]
    await api.acall("POST", f"/api/v1/installs/{install['id']}/cancel", {"why": "the soak's idle socket"})
    for _ in range(60):
        if (await api.acall("GET", f"/api/v1/installs/{install['id']}"))["state"] == "cancelled":
            break
        await asyncio.sleep(1)
    await asyncio.sleep(6)  # the cleanup job's events
    last = 0
    while True:  # the events a page at a time, each after the last id read
        page = await api.acall("GET", f"/api/v1/installs/{install['id']}/events?after={last}&per_page=1000")
        if not page["results"]:
            return install["id"], last
        last = page["results"][-1]["id"]


async def soak(args, port: int, api_key: str, session_key: str, supervisor: Supervisor, periodic: PeriodicWatch,
               workers: list[str], rng: random.Random) -> dict:  # fmt: skip
    api = Api(port, api_key)
    idle_id, idle_after = await idle_install(api)
    sockets = {
        "idle": LiveSocket("idle", port, f"/ws/installs/{idle_id}/", session_key, after=idle_after).start(),
        # Every event so far is the idle install's: the dashboard is owed everything after them.
        "dashboard": LiveSocket("dashboard", port, "/ws/dashboard/", session_key, after=idle_after).start(),
    }
    health = HealthWatch(port, periodic)
    health_task = asyncio.create_task(health.run())
    seconds = args.minutes * 60
    plan = FaultPlan.for_duration(seconds)
    started = time.monotonic()
    injector = asyncio.create_task(Injector(plan, supervisor, workers, args.database_url, port, rng).run(started))
    good = [f"soak-r{r}-{i:02d}" for r in range(1, args.racks + 1) for i in range(1, args.per_rack + 1)]
    stream = Stream(
        api, good, port, session_key, batch_size=args.batch_size, every_s=args.every, watch_every=args.watch_every,
        stop_deadline_faults_at=started + seconds - DEADLINE_FAULT_CUTOFF_S, rng=rng,
    )  # fmt: skip
    say(f"stream of installs for {args.minutes:g} min; faults: "
        + ", ".join(f"{f.kind} +{f.at:.0f}s" for f in plan.faults))  # fmt: skip
    await stream.run(until=started + seconds)
    await injector
    say("stream stopped; waiting for the installs in flight to end")
    drained = await stream.drain(DRAIN_LIMIT_S)
    await asyncio.sleep(SETTLE_S)
    ended = time.monotonic()
    healthy = False
    for _ in range(15):
        status, last = await asyncio.to_thread(healthz, port)
        if status == 200:
            healthy = True
            break
        await asyncio.sleep(2)
    health_task.cancel()
    for sock in stream.sockets:
        sockets[sock.name] = sock
    await asyncio.gather(*(s.stop() for s in sockets.values()))
    return {
        "plan": plan, "sockets": sockets, "started": started, "ended": ended, "drained_s": drained,
        "stream_s": seconds, "healthy": healthy, "last_health": last, "api_errors": api.errors,
        "refused": stream.refused, "health_polls": health.polls,
    }  # fmt: skip


def figures(result: dict, supervisor: Supervisor, periodic: PeriodicWatch, env: dict, tftp_root: Path) -> dict:
    plan = result["plan"]
    streams = {}
    for name, sock in result["sockets"].items():
        install = None if name == "dashboard" else int(sock.path.strip("/").split("/")[-1])
        streams[name] = {"install": install, "after": sock.start_after}
    db = truth(env, "report", asked={"tftp_root": str(tftp_root), "streams": streams})
    installs, armed = db["installs"], db["armed"]
    source, runs = periodic.runs()
    unhealthy = sum(1 for _, status in result["health_polls"] if status != 200)
    out = {
        "soak_s": round(result["ended"] - result["started"]),
        "installs": installs,
        "deadline_failures": report.deadline_figures(installs),
        "periodic": report.periodic_figures(
            runs, periodic.every_s, periodic.since, result["ended"], periodic.overdue_seen
        ),
        "periodic_source": source,
        # What the workers' logs say ran, beside /healthz's account: the two must agree.
        "periodic_in_worker_logs": {
            name: sum(1 for t in times if periodic.since <= t <= result["ended"])
            for name, times in periodic.log_runs.items()
        },
        "websockets": report.socket_figures(result["sockets"], db["stored"], plan),
        "armed": len(armed),
        "armed_configs": armed[:20],
        "faults": {k: plan.count(k) for k in ("kill-worker", "redis-restart", "postgres-terminate", "daphne-restart")},
        "fault_log": [f"+{f.at:.0f}s {f.kind}: {f.detail}" for f in plan.faults],
        "unexpected_exits": [f"{e.name} status {e.code} at +{e.at - result['started']:.0f}s"
                             for e in supervisor.unexpected_exits()],  # fmt: skip
        "healthz_unhealthy_polls": f"{unhealthy}/{len(result['health_polls'])}",
        "healthz_ok_at_end": result["healthy"],
        "api_errors": result["api_errors"],
        "drain_s": round(result["drained_s"]),
    }
    if not result["healthy"]:
        out["healthz_at_end"] = result["last_health"]
    out["pass"], out["misses"] = report.verdict(out)
    return out


def summary(f: dict) -> None:
    i, ws = f["installs"], f["websockets"]
    print(f"installs: {i['requested']} requested, {i['succeeded']} succeeded, {i['failed']} failed "
          f"({i['failed_without_reason']} without a reason), {i['cancelled']} cancelled, "
          f"{i['stuck']} stuck")  # fmt: skip
    print(f"failure reasons: {i['failure_reasons']}; good machines failed: {i['good_machines_failed']}")
    for hostname, x in i["faulty"].items():
        print(f"  {hostname}: {x['requested']} requested, {x['failed_as_expected']} failed with "
              f"{FAULTY[hostname][1]}, others {x['other']}")  # fmt: skip
    d = f["deadline_failures"]
    print(f"deadline failures: {d['seen']} seen of {d['expected']} expected")
    for name, p in f["periodic"].items():
        print(f"periodic {name} (every {p['every_s']:g} s, from {f['periodic_source']}): {p['seen']} runs of "
              f"{p['expected']} expected, max gap {p['max_gap_s']} s, on time: {p['on_time']}")  # fmt: skip
    print(f"websockets: {ws['sockets']} sockets, {ws['unexpected_closes']} closes not caused by the run "
          f"{ws['unexpected_close_codes']} after {ws['unexpected_closes_after']}, "
          f"{ws['closes_by_the_run']} by the daphne restart, "
          f"{ws['lost']} events lost, {ws['duplicates']} duplicates, {ws['resyncs']} resyncs")  # fmt: skip
    for name in ("idle", "dashboard"):
        print(f"  {name}: {ws['per_socket'][name]}")
    print(f"per-MAC configs armed for ended installs: {f['armed']} {f['armed_configs']}")
    print(f"faults: {f['faults']}; unexpected process exits: {len(f['unexpected_exits'])} {f['unexpected_exits']}")
    for line in f["fault_log"]:
        print(f"  {line}")
    print(f"/healthz: unhealthy polls {f['healthz_unhealthy_polls']}, healthy at the end: {f['healthz_ok_at_end']}")
    print("PASS" if f["pass"] else "FAIL: " + "; ".join(f["misses"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 10)))
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/provisioner_soak")
    parser.add_argument("--keep-database", action="store_true", help="keep the database for a post-mortem")
    parser.add_argument("--racks", type=int, default=2)
    parser.add_argument("--per-rack", type=int, default=6, help="good machines per rack")
    parser.add_argument("--batch-size", type=int, default=4, help="good machines per request")
    parser.add_argument("--every", type=float, default=15, help="seconds between requests")
    parser.add_argument("--watch-every", type=int, default=3, help="one install in this many gets its own socket")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    state = ROOT / "var" / "soak"
    shutil.rmtree(state, ignore_errors=True)
    logs = state / "logs"
    logs.mkdir(parents=True)
    # The websocket library's own messages (refused upgrades during a restart...) go to a file, not the summary.
    logging.basicConfig(filename=logs / "soak.log", level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    redis_socket = state / "redis.sock"
    env = production_env(args.database_url, f"unix://{redis_socket}?db=0", state, DEADLINES)
    port = free_port()
    say(f"seed {seed}; state and logs in {state}; daphne on port {port}")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    supervisor = Supervisor(env, logs)
    try:
        recreate_database(args.database_url)
        supervisor.start("redis", redis_argv(redis_socket, state))
        wait_for(redis_socket.exists, 10, "redis-server")
        manage(env, "migrate", "--noinput", "-v", "0", log=logs / "setup.log")
        manage(env, "collectstatic", "--noinput", "-v", "0", log=logs / "setup.log")
        lab_config = state / "lab.json"
        write_lab_config(lab_config, args.racks, args.per_rack)
        inventory = state / "lab" / "inventory.json"
        supervisor.start("lab", [
            PYTHON, "-m", "provisioner.lab", "--config", str(lab_config), "--state-dir", str(state / "lab"),
            "--base-url", f"http://127.0.0.1:{port}", "--install-s", str(LAB_INSTALL_S),
        ], restart=False)  # fmt: skip
        wait_for(inventory.exists, 60, "the lab")
        manage(env, "load_demo", "--lab-inventory", str(inventory), log=logs / "setup.log")
        tftp_root = Path(json.loads(inventory.read_text())["site"]["tftp_root"])

        made = truth(env, "setup")
        api_key, session_key = made["api_key"], made["session_key"]
        periodic = PeriodicWatch(
            {"sweep": DEADLINES["SWEEP_INTERVAL_S"], "power_sync": DEADLINES["POWER_SYNC_INTERVAL_S"]}
        )
        # The units' command lines (deploy/systemd), one worker per unit. Periodic jobs are owed from now on.
        periodic.since = time.monotonic()
        supervisor.start("daphne", [PYTHON, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port),
                                    "--proxy-headers"])  # fmt: skip
        workers = ["worker-control", "worker-lab"]
        supervisor.start(workers[0], [PYTHON, "manage.py", "worker", "--control-only"], on_line=periodic.worker_line)
        supervisor.start(workers[1], [PYTHON, "manage.py", "worker", "--site", "lab", "--no-default"],
                         on_line=periodic.worker_line)  # fmt: skip
        supervisor.start("scheduler", [PYTHON, "manage.py", "scheduler"])
        wait_for(lambda: healthz(port)[0] == 200, 60, "a healthy stack (/healthz)")
        result = asyncio.run(soak(args, port, api_key, session_key, supervisor, periodic, workers, rng))
        out = figures(result, supervisor, periodic, env, tftp_root)
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        supervisor.stop()
        if args.keep_database:
            say(f"database kept: {args.database_url}")
        else:
            drop_database(args.database_url)
    summary(out)
    out["seed"] = seed
    print(json.dumps(out, separators=(",", ":"), default=str))
    return 0 if out["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
