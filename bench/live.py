"""Benchmark live updates end to end: simulated agents POST progress through the real agent API
(daphne, PostgreSQL, Redis channel layer) at a set rate, and a browser-like websocket client on the
dashboard stream times each event from the moment its POST was sent until it arrives.

    .venv/bin/python bench/live.py [--rate 500 --seconds 10 --installs 500 --servers 1]

``--servers`` daphne processes share the load as they would behind a load balancer. It uses its own
database (provui_live, recreated) and Redis database 10. Goal: p95 ≤ 50 ms at 500 events/s. The last
line is machine-readable.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_env(args) -> dict:
    env = {
        "PROVISIONER_DEV": "1",
        "DEBUG": "0",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "PROVISIONER_VAR_DIR": str(ROOT / "var" / "bench"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    os.environ.update(env)
    return {**os.environ, **env}


def recreate_database(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def build(installs: int) -> tuple[list[tuple[str, str]], str]:
    """Installs each with an agent task handed out; returns [(token, task id)] and a viewer's session key."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from accounts.models import User
    from installs import tokens
    from installs.models import Install, InstallState, Step, StepKind, StepState
    from inventory.models import NIC, Machine, OSProfile, Rack, Site

    site = Site.objects.create(slug="live", name="Live", tftp_root="/tmp/live-tftp", base_url="http://127.0.0.1")
    racks = Rack.objects.bulk_create(Rack(site=site, name=f"r{n:02d}", height_u=48) for n in range(installs // 48 + 1))
    profile = OSProfile.objects.create(
        name="bench-image", method="image", kernel="k", initrd="i", image_url="http://x/i.img", image_sha256="a" * 64
    )
    machines = Machine.objects.bulk_create(
        Machine(hostname=f"live-{n:03d}", rack=racks[n // 48], position_u=n % 48 + 1) for n in range(installs)
    )
    NIC.objects.bulk_create(
        NIC(machine=m, mac=f"52:54:00:aa:{n >> 8:02x}:{n & 255:02x}", is_pxe=True) for n, m in enumerate(machines)
    )
    nonces = [tokens.new_nonce() for _ in machines]
    plan = {"site": {"slug": "live"}, "profile": {"name": "bench-image"}, "step_count": 1}
    rows = Install.objects.bulk_create(
        Install(
            machine=m,
            profile=profile,
            requested_by_label="bench",
            state=InstallState.INSTALLING,
            plan=plan,
            # Registered agents: the boot credential is spent and the agent token handed over.
            token_nonce=nonce,
            boot_token_hash=tokens.token_hash(tokens.boot_token(nonce)),
            boot_token_spent_at=timezone.now(),
            agent_token_hash=tokens.token_hash(tokens.agent_token(nonce)),
        )
        for m, nonce in zip(machines, nonces, strict=True)
    )
    steps = Step.objects.bulk_create(
        Step(install=i, order=0, kind=StepKind.AGENT_TASK, task="write_image", state=StepState.DISPATCHED, attempts=1)
        for i in rows
    )
    agents = [(tokens.agent_token(nonce), f"{step.pk}.1") for nonce, step in zip(nonces, steps, strict=True)]
    user = User.objects.create_user("live-viewer", password=secrets.token_hex(16))
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return agents, session.session_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daphne(env: dict, port: int, log) -> subprocess.Popen:
    # Under ASGI each request's sync view runs in a thread of its own, and a persistent connection
    # (CONN_MAX_AGE > 0) outlives that thread: a few hundred requests exhaust PostgreSQL's connections.
    # Django's advice for ASGI is CONN_MAX_AGE=0 (or a pool); the bench runs as production should.
    env = {**env, "DATABASE_CONN_MAX_AGE": env.get("DATABASE_CONN_MAX_AGE", "0")}
    cmd = [sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port)]  # as deployed
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    proc.wait(10)
    raise RuntimeError("daphne did not start")


# --- a minimal websocket reader (RFC 6455): a browser's side of the dashboard stream ------------


async def ws_connect(port: int, path: str, cookie: str):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"Cookie: sessionid={cookie}\r\n\r\n"
        ).encode()
    )
    status = await reader.readline()
    if b" 101 " not in status:
        raise RuntimeError(f"websocket refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer


async def ws_messages(reader):
    while True:
        head = await reader.readexactly(2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await reader.readexactly(8), "big")
        payload = await reader.readexactly(length)
        if opcode == 0x8:
            return
        if opcode == 0x1:
            yield json.loads(payload)


# --- the agents ------------------------------------------------------------------------------------


async def agent(port: int, token: str, task_id: str, seqs: list[int], start: float, rate: float, log: dict) -> None:
    """One machine's agent: its own keep-alive connection, one report at a time, each at its due time."""
    path = f"/api/agent/v1/tasks/{task_id}/progress"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # before the clock starts, as agents run
    for seq in seqs:
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        body = json.dumps({"percent": seq % 100, "message": f"bench {seq}"}).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            log["sent"][seq] = time.monotonic()
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            log["answered"][seq] = time.monotonic()
            if b" 200 " not in status:
                log["errors"].append(status.decode(errors="replace").strip())
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            log["errors"].append(repr(exc))
            writer = None
    if writer is not None:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500, help="events per second, all agents together")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--installs",
        type=int,
        default=500,
        help="machines reporting, each on its own connection (500 at 500/s: 1/s each)",
    )
    parser.add_argument("--servers", type=int, default=1, help="daphne processes for the agents (plus one for the UI)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/provui_live")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()
    env = setup_env(args)
    recreate_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from core import queues

    queues.connection().flushdb()  # channels of earlier runs' sockets would stay in the dashboard group
    agents, cookie = build(args.installs)
    log = (ROOT / "var" / "bench").joinpath("live-daphne.log").open("ab")
    # The browsers' daphne is its own process, as in a deployment where machines reach the agent API
    # on the PXE network and people reach the UI on the office network.
    ports = [free_port() for _ in range(args.servers + 1)]
    servers = []
    try:
        for port in ports:
            servers.append(start_daphne(env, port, log))
        result = asyncio.run(run(args, ports, agents, cookie))
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(10)
    latencies, total, errors, achieved = result
    latencies.sort()
    if not latencies:
        print("no event arrived")
        sys.exit(1)
    p50 = statistics.median(latencies)
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    print(
        f"sent={total} received={len(latencies)} lost={total - len(latencies)} errors={len(errors)} "
        f"rate_asked={args.rate:.0f}/s rate_achieved={achieved:.0f}/s servers={args.servers}"
    )
    print(
        f"p50_ms={p50:.1f} p95_ms={p95:.1f} p99_ms={p99:.1f} max_ms={latencies[-1]:.1f} "
        f"goal_met={p95 <= 50 and len(latencies) == total}"
    )


async def run(args, ports, agents, cookie):
    ui_port, ports = ports[0], ports[1:]
    reader, writer = await ws_connect(ui_port, "/ws/dashboard/", cookie)
    received: dict[int, float] = {}
    total = int(args.rate * args.seconds)

    async def listen():
        async for frame in ws_messages(reader):
            for event in frame.get("events", []) + ([frame["event"]] if "event" in frame else []):
                message = event.get("message", "")
                if message.startswith("bench "):
                    received[int(message.split()[1])] = time.monotonic()
            if len(received) >= total:
                return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.5)
    log: dict = {"sent": {}, "answered": {}, "errors": []}
    start = time.monotonic() + 2  # the agents connect first
    await asyncio.gather(
        *(
            agent(ports[n % len(ports)], token, task_id, list(range(n, total, len(agents))), start, args.rate, log)
            for n, (token, task_id) in enumerate(agents)
        )
    )
    finished = time.monotonic()
    sent, answered, errors = log["sent"], log["answered"], log["errors"]
    try:
        await asyncio.wait_for(listener, timeout=30)  # lag is measured; only what never comes is lost
    except TimeoutError:
        pass
    writer.close()
    achieved = total / max(1e-9, finished - start)
    latencies = [(received[s] - sent[s]) * 1000 for s in sent if s in received]
    lost = sorted(set(sent) - set(received))
    if lost and os.environ.get("BENCH_SHOW_LOST"):
        print("lost:", lost)
    post = sorted((answered[s] - sent[s]) * 1000 for s in answered)
    push = sorted((received[s] - answered[s]) * 1000 for s in answered if s in received)
    by_second: dict[int, list[float]] = {}
    for seq in sent:
        if seq in received:
            by_second.setdefault(int(sent[seq] - start), []).append((received[seq] - sent[seq]) * 1000)
    print("p95_ms by second:", " ".join(f"{_p95(sorted(v)):.0f}" for _, v in sorted(by_second.items())))
    if post and push:
        print(f"agent POST round trip: p50_ms={statistics.median(post):.1f} p95_ms={_p95(post):.1f}")
        print(f"websocket after the POST was answered: p50_ms={statistics.median(push):.1f} p95_ms={_p95(push):.1f}")
    return latencies, total, errors, achieved


def _p95(values: list[float]) -> float:
    return values[max(0, int(len(values) * 0.95) - 1)]


if __name__ == "__main__":
    main()
