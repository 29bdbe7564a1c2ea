"""Faults on a schedule: a worker SIGKILLed every minute, and once each a Redis restart (everything in it lost),
a termination of every PostgreSQL backend of the soak's database, and a daphne restart.

Each fault is logged with its time and leaves a window: a websocket close inside the daphne restart's window
is caused by the run; any other close is not.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass, field

from .api import healthz
from .stack import Supervisor, say

KILL_EVERY_S = 60.0
# A single fault this close to a worker kill moves later, so each one's effects can be told apart.
APART_S = 12.0
# How long after daphne answers again a close still counts as caused by its restart (browsers' sockets
# were closed by the restart; their reconnects may land on the stopping process).
DAPHNE_GRACE_S = 5.0


@dataclass
class Fault:
    at: float  # seconds after the stream started
    kind: str
    done_at: float | None = None  # monotonic
    ended_at: float | None = None  # monotonic: the service is back
    detail: str = ""


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def for_duration(cls, seconds: float) -> FaultPlan:
        kills = [KILL_EVERY_S * k for k in range(1, int(seconds // KILL_EVERY_S) + 1) if KILL_EVERY_S * k < seconds]
        faults = [Fault(t, "kill-worker") for t in kills]
        for share, kind in ((0.3, "redis-restart"), (0.5, "postgres-terminate"), (0.7, "daphne-restart")):
            at = round(seconds * share)
            while any(abs(at - t) < APART_S for t in kills):
                at += APART_S
            faults.append(Fault(at, kind))
        return cls(sorted(faults, key=lambda f: f.at))

    def windows(self, kind: str) -> list[tuple[float, float]]:
        return [
            (f.done_at - 1.0, (f.ended_at or f.done_at) + DAPHNE_GRACE_S)
            for f in self.faults
            if f.kind == kind and f.done_at is not None
        ]

    def count(self, kind: str) -> int:
        return sum(1 for f in self.faults if f.kind == kind and f.done_at is not None)


class Injector:
    def __init__(self, plan: FaultPlan, supervisor: Supervisor, workers: list[str], database_url: str, port: int,
                 rng: random.Random):  # fmt: skip
        self.plan = plan
        self.supervisor = supervisor
        self.workers = workers
        self.database_url = database_url
        self.port = port
        self.rng = rng

    async def run(self, started: float) -> None:
        for fault in self.plan.faults:
            await asyncio.sleep(max(0.0, started + fault.at - time.monotonic()))
            try:
                await getattr(self, fault.kind.replace("-", "_"))(fault)
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                fault.detail = f"could not inject: {exc!r}"
            say(f"fault {fault.kind} at +{fault.at:.0f} s: {fault.detail}")

    async def kill_worker(self, fault: Fault) -> None:
        name = self.rng.choice(self.workers)
        pid = self.supervisor.signal(name, signal.SIGKILL)
        fault.done_at = time.monotonic()
        fault.detail = f"SIGKILL {name} (pid {pid})"

    async def redis_restart(self, fault: Fault) -> None:
        pid = self.supervisor.signal("redis", signal.SIGTERM)
        fault.done_at = time.monotonic()
        await self._until_restarted("redis", pid)
        fault.ended_at = time.monotonic()
        took = fault.ended_at - fault.done_at
        fault.detail = f"SIGTERM redis-server (pid {pid}), started again, empty, after {took:.1f} s"

    async def postgres_terminate(self, fault: Fault) -> None:
        terminated = await asyncio.to_thread(terminate_backends, self.database_url)
        fault.done_at = fault.ended_at = time.monotonic()
        fault.detail = f"pg_terminate_backend of {terminated} connection(s) to the soak's database"

    async def daphne_restart(self, fault: Fault) -> None:
        pid = self.supervisor.signal("daphne", signal.SIGTERM)
        fault.done_at = time.monotonic()
        await self._until_restarted("daphne", pid)
        while (await asyncio.to_thread(healthz, self.port))[0] == 0:
            await asyncio.sleep(0.2)
        fault.ended_at = time.monotonic()
        fault.detail = f"SIGTERM daphne (pid {pid}), answering again after {fault.ended_at - fault.done_at:.1f} s"

    async def _until_restarted(self, name: str, old_pid: int, limit_s: float = 60) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            pid = self.supervisor.pid(name)
            if pid is not None and pid != old_pid:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{name} was not started again within {limit_s:.0f} s")


def terminate_backends(database_url: str) -> int:
    """Every connection to the soak's database, at once, as a failover or an administrator would."""
    import psycopg

    base, _, name = database_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        ).fetchone()
    return int(row[0])
