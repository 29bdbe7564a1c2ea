"""Round trips per install: what a site's worker asks of the centre (PostgreSQL queries, Redis calls) for
each install it runs, by step kind, and the install's wall time over a slow link.

    .venv/bin/python bench/round_trips.py --machines 20 --latency-ms 0,50

N installs on fake BMCs (bench/installs.py's site and simulated agents) run on one real site worker process
whose queries and Redis calls are counted inside it: every SQL statement through Django's execute wrapper,
every Redis command or pipeline (one round trip each) through redis-py. A count goes to the step kind whose
run came last in the job (so a kind's figure includes settling it and claiming the next step); ``claim`` is a
job's first claim, ``rq`` RQ's own bookkeeping around jobs, ``publish`` the websocket events sent from the
worker's publisher thread. With --latency-ms the worker reaches PostgreSQL and Redis through tests/tcp_proxy.py,
which adds that much each way. ROUND_TRIPS_DETAIL=1 also lists the Redis commands and pipelines most made.

It uses its own database (provisioner_round_trips, recreated) and a redis-server of its own on --redis-port.
The last line is machine-readable:
    installs=N latency_ms=L sql_per_install=... redis_per_install=... wall_s=...
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_spec = importlib.util.spec_from_file_location("bench_installs", Path(__file__).with_name("installs.py"))
bench_installs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_installs)


# --- the counting worker (a child process) ----------------------------------------------------------


class Counts:
    """Round trips by label, from any thread of the worker."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sql: Counter = Counter()
        self.redis: Counter = Counter()
        self.detail: Counter = Counter()
        self.local = threading.local()

    def label(self) -> str:
        if threading.current_thread().name == "event-publisher":
            return "publish"
        return getattr(self.local, "label", "rq")

    def add_detail(self, name):
        with self.lock:
            self.detail[self.label() + " " + name] += 1

    def add(self, which: Counter) -> None:
        label = self.label()
        with self.lock:
            which[label] += 1


def install_counters(counts: Counts) -> None:
    """Count from inside the worker: Django's execute wrapper on every connection it opens, redis-py's
    command and pipeline calls (sync, and async for the channel layer), and the step kind being run."""
    import redis.asyncio.client as async_client
    import redis.client
    from django.db.backends.signals import connection_created
    from rq.job import Job

    from installs.stepkinds import StepKindSpec

    def sql_wrapper(execute, sql, params, many, context):
        counts.add(counts.sql)
        return execute(sql, params, many, context)

    def on_connect(sender, connection, **kwargs):
        if sql_wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(sql_wrapper)

    connection_created.connect(on_connect, weak=False)

    def counted(method):
        def wrapper(self, *args, **kwargs):
            counts.add(counts.redis)
            if os.environ.get("ROUND_TRIPS_DETAIL"):
                name = args[0] if args else "pipeline:" + ",".join(str(c[0][0]) for c in self.command_stack)
                counts.add_detail(str(name))
            return method(self, *args, **kwargs)

        return wrapper

    def counted_async(method):
        async def wrapper(self, *args, **kwargs):
            counts.add(counts.redis)
            return await method(self, *args, **kwargs)

        return wrapper

    redis.client.Redis.execute_command = counted(redis.client.Redis.execute_command)
    redis.client.Pipeline.execute = counted(redis.client.Pipeline.execute)
    async_client.Redis.execute_command = counted_async(async_client.Redis.execute_command)
    async_client.Pipeline.execute = counted_async(async_client.Pipeline.execute)

    perform = Job.perform

    def perform_labelled(job):
        counts.local.label = "claim" if job.func_name.endswith(".advance") else job.func_name.rsplit(".", 1)[-1]
        try:
            return perform(job)
        finally:
            counts.local.label = "rq"

    Job.perform = perform_labelled
    run = StepKindSpec.run

    def run_labelled(self, install, step):
        counts.local.label = str(self.kind)
        return run(self, install, step)

    StepKindSpec.run = run_labelled


def child_worker(site: str, stats_path: str) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    counts = Counts()
    install_counters(counts)
    try:
        call_command("worker", "--site", site, "--no-default")
    finally:
        Path(stats_path).write_text(json.dumps({"sql": counts.sql, "redis": counts.redis, "detail": counts.detail}))


# --- the bench --------------------------------------------------------------------------------------


def start_redis(port: int, directory: str) -> subprocess.Popen:
    import redis

    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"redis-server did not start on port {port} (taken?)") from None
            time.sleep(0.05)


def run_once(args, env: dict, latency_ms: float) -> dict:
    """One wave of installs on a fresh site; returns the worker's counts and the wall time."""
    from django.core.management import call_command
    from django.db import connection

    from audit.service import Actor
    from core import queues
    from installs.batches import request_installs
    from installs.models import ACTIVE_STATES, Install
    from tests.tcp_proxy import TcpProxy

    connection.close()
    bench_installs.recreate_database(args.database_url)
    call_command("migrate", verbosity=0)
    queues.connection().flushdb()
    site, profile, machines = bench_installs.build_site(args.machines, tempfile.mkdtemp(prefix="bench-tftp-"))
    db = connection.settings_dict
    proxies = [
        TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)), delay_s=latency_ms / 1000).start(),
        TcpProxy(("127.0.0.1", args.redis_port), delay_s=latency_ms / 1000).start(),
    ]
    stats = Path(tempfile.mkstemp(prefix="round-trips-", suffix=".json")[1])
    worker_env = {
        **env,
        "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{proxies[0].port}/{db['NAME']}",
        "REDIS_URL": f"redis://127.0.0.1:{proxies[1].port}/0",
    }
    popen = {"cwd": ROOT, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    worker = subprocess.Popen(
        [sys.executable, __file__, "--child-worker", site.slug, "--stats", str(stats)], env=worker_env, **popen
    )
    scheduler = subprocess.Popen([sys.executable, "manage.py", "scheduler"], env=env, **popen)
    deadline = time.monotonic() + 60
    while not queues.connection().smembers("rq:workers"):
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not start")
        time.sleep(0.1)
    started = time.monotonic()
    request_installs(
        [m.pk for m in machines], profile, Actor.system("bench"), max_per_site=len(machines),
        max_per_rack=len(machines), stagger_s=0,
    )  # fmt: skip
    agents = bench_installs.SimulatedAgents()
    agents.start()
    deadline = started + args.timeout
    while time.monotonic() < deadline and Install.objects.filter(state__in=ACTIVE_STATES).exists():
        time.sleep(0.1)
    wall = time.monotonic() - started
    # The cleanup jobs run after the install ends: let the queue empty before counting stops.
    while time.monotonic() < deadline and (queues.site_queue(site.slug).count or _cleanups_left()):
        time.sleep(0.1)
    agents.stop.set()
    agents.join(timeout=10)
    for proc in (worker, scheduler):
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in (worker, scheduler):
        proc.wait(timeout=60)
    for proxy in proxies:
        proxy.stop()
    counted = json.loads(stats.read_text())
    stats.unlink()
    states = Counter(Install.objects.values_list("state", flat=True))
    return {"wall_s": wall, "states": states, **counted}


def _cleanups_left() -> bool:
    from installs.models import Install

    return Install.objects.filter(cleaned_at__isnull=True).exists()


def report(result: dict, n: int, latency_ms: float) -> None:
    sql, rds = Counter(result["sql"]), Counter(result["redis"])
    states, wall = dict(result["states"]), result["wall_s"]
    print(f"\nlatency {latency_ms:g} ms each way: {n} installs, {states}, wall {wall:.1f} s")
    print(f"  {'per install':24} {'sql':>7} {'redis':>7}")
    for label in sorted(set(sql) | set(rds), key=lambda k: -(sql[k] + rds[k])):
        print(f"  {label:24} {sql[label] / n:7.1f} {rds[label] / n:7.1f}")
    print(f"  {'total':24} {sum(sql.values()) / n:7.1f} {sum(rds.values()) / n:7.1f}")
    for name, count in Counter(result.get("detail", {})).most_common(25):
        print(f"    {name[:70]:70} {count / n:7.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--latency-ms", default="0,50", help="Comma separated: one run per added latency.")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/provisioner_round_trips")
    parser.add_argument("--redis-port", type=int, default=16410)
    parser.add_argument("--child-worker", metavar="SITE", help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_worker:
        child_worker(args.child_worker, args.stats)
        return 0

    args.redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
    redis_dir = tempfile.mkdtemp(prefix="bench-redis-")
    redis_proc = start_redis(args.redis_port, redis_dir)
    try:
        env = bench_installs.setup_env(args)
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
        ok = True
        for latency in [float(x) for x in args.latency_ms.split(",")]:
            result = run_once(args, env, latency)
            report(result, args.machines, latency)
            ok = ok and result["states"].get("succeeded") == args.machines
            print(
                f"installs={args.machines} latency_ms={latency:g} "
                f"sql_per_install={sum(result['sql'].values()) / args.machines:.1f} "
                f"redis_per_install={sum(result['redis'].values()) / args.machines:.1f} wall_s={result['wall_s']:.1f}"
            )
        return 0 if ok else 1
    finally:
        os.killpg(redis_proc.pid, signal.SIGTERM)
        redis_proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
