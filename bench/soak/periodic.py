"""The periodic jobs' runs, and /healthz watched every few seconds."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import defaultdict
from datetime import datetime

from .api import healthz

# How the workers name a job they start (rq: "Worker <name>: <queue>: <description> (<job id>)").
_RQ_START = re.compile(r": [\w-]+: ([\w.]+)\((.*)\) \(([^)]*)\)\s*$")
#: The periodic jobs known before a scheduler reported them in /healthz, by the function a worker runs.
PERIODIC_FUNCTIONS = {"installs.sweeper.sweep": "sweep", "inventory.power.power_sync": "power_sync"}
#: The scheduler's one entry point, which takes the job's name.
PERIODIC_RUNNER = "installs.periodic.run"


class PeriodicWatch:
    """Runs of each periodic job: from /healthz's ``periodic`` section when the control plane has one (its
    ``runs`` counters, which may restart from 0 with Redis or the scheduler), else from the workers' logs."""

    def __init__(self, every_s: dict[str, float]):
        self.log_every = dict(every_s)  # the jobs known without /healthz's word, and their settings
        self.health_every: dict[str, float] = {}
        self.log_runs: dict[str, list[float]] = defaultdict(list)
        self.health_runs: dict[str, list[float]] = defaultdict(list)
        self.overdue_seen: dict[str, int] = defaultdict(int)
        self._last: dict[str, tuple[int, str, float]] = {}  # runs, last run, when /healthz said so
        self.healthz_periodic = False
        self.since = time.monotonic()  # when the processes that run them were started
        self.lock = threading.Lock()

    def worker_line(self, service: str, line: str) -> None:
        match = _RQ_START.search(line)
        if match is None:
            return
        func, args = match.group(1), match.group(2)
        name = PERIODIC_FUNCTIONS.get(func) or (args.strip("'\"") if func == PERIODIC_RUNNER else None)
        if name:
            with self.lock:
                self.log_runs[name].append(time.monotonic())

    def health(self, report: dict) -> None:
        periodic = report.get("periodic")
        if not isinstance(periodic, dict):
            return
        self.healthz_periodic = True
        now = time.monotonic()
        for name, job in periodic.items():
            every = float(job.get("every_s") or self.log_every.get(name) or 0)
            self.health_every[name] = every
            if job.get("overdue"):
                self.overdue_seen[name] += 1
            runs, last = int(job.get("runs") or 0), str(job.get("last_run_at") or "")
            before = self._last.get(name)
            self._last[name] = (runs, last, now)
            if before is None:
                # Every run so far came after the stack started (a fresh database and Redis): only the last
                # one's time is known, the others are put a period apart before it.
                at = _when(last, now) if last else now
                self.health_runs[name].extend(at - k * every for k in range(runs))
                continue
            if runs > before[0]:
                new = runs - before[0]
            elif runs < before[0]:  # counters started again (Redis or the scheduler restarted)
                new = runs or int(last != before[1])
            else:
                new = int(last != before[1] and bool(last))
            if new > 1:
                # Runs that happened while /healthz did not answer (a web server restart): healthz gives only
                # the last one's time; the worker's log saw each when it started, so take theirs.
                seen = [t for t in self.log_runs.get(name, []) if before[2] < t <= now]
                if len(seen) >= new:
                    self.health_runs[name].extend(seen[-new:])
                    continue
            self.health_runs[name].extend([_when(last, now)] * new)

    @property
    def every_s(self) -> dict[str, float]:
        return self.health_every if self.healthz_periodic else self.log_every

    def runs(self) -> tuple[str, dict[str, list[float]]]:
        if self.healthz_periodic:
            return "healthz", self.health_runs
        return "worker-logs", self.log_runs


def _when(iso: str, now: float) -> float:
    """A run's monotonic time from its ISO timestamp (the soak and the stack share a clock)."""
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return now
    return now - max(0.0, time.time() - at.timestamp())


class HealthWatch:
    """/healthz every few seconds: its status for the report, its periodic section for PeriodicWatch."""

    def __init__(self, port: int, periodic: PeriodicWatch, every_s: float = 5.0):
        self.port = port
        self.periodic = periodic
        self.every_s = every_s
        self.polls: list[tuple[float, int]] = []
        self.last: dict = {}

    async def run(self) -> None:
        while True:
            status, report = await asyncio.to_thread(healthz, self.port)
            self.polls.append((time.monotonic(), status))
            if report:
                self.last = report
                self.periodic.health(report)
            await asyncio.sleep(self.every_s)
