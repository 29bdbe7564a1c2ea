"""Periodic work, declared in one place, and the scheduler process that runs it.

``SCHEDULE`` lists every periodic job. ``manage.py scheduler`` runs RQ's cron scheduler with them and
also moves delayed RQ jobs (retries with backoff, staggered power-ons) onto their queues when their
time comes; workers schedule nothing. A job never schedules itself, so it cannot unschedule itself.

Exactly once per period, however many schedulers run: each period of each job is one RQ job whose id
names the period (``periodic-sweep-<n>``, n = epoch seconds // period), enqueued with RQ's unique
enqueue, so a second scheduler (a standby on another host, or one restarted mid-period) finds the
period taken and enqueues nothing. Nothing about the schedule lives only in Redis: it is this table,
read at start, so a Redis restart loses at most the period in flight. Every run is recorded in the
database (PeriodicRun), which is what /healthz reads to call a job overdue.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string
from rq import Queue, cron_scheduler_registry
from rq.cron import CronJob, CronScheduler
from rq.exceptions import DuplicateJobError
from rq.scheduler import RQScheduler
from rq.scripts import release_lock

from core import queues
from inventory.models import Site

from .models import PeriodicRun

log = logging.getLogger(__name__)

# Redis errors the scheduler waits out: the server restarting, a failover, a network blip.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)
# The scheduler looks at the clock this often: the lateness of a delayed job (a retry, a staggered
# power-on) and of a period's start is at most this.
TICK_S = 1.0
# While Redis is down the scheduler retries, doubling its pause up to this (a restart takes seconds).
MAX_BACKOFF_S = 5.0
# New sites' queues are picked up this often.
QUEUES_REFRESH_S = 30.0
# A scheduler beats every tick (a second); one silent this long is gone (killed, host down, hung).
SCHEDULER_STALE_S = 15.0


@dataclass(frozen=True)
class Periodic:
    name: str
    func: str  # dotted path of a function that takes no arguments
    interval_setting: str  # the setting that gives its period in seconds
    does: str  # for /healthz readers and the scheduler's log

    @property
    def every_s(self) -> int:
        return max(1, int(getattr(settings, self.interval_setting)))


SCHEDULE: tuple[Periodic, ...] = (
    Periodic(
        "sweep",
        "installs.sweeper.sweep",
        "SWEEP_INTERVAL_S",
        "fails installs past their deadline, retries steps whose worker died, re-queues lost jobs",
    ),
    Periodic(
        "power_sync",
        "inventory.power.power_sync",
        "POWER_SYNC_INTERVAL_S",
        "re-reads every machine's power state, one sweep per site, the sites spread over the period",
    ),
    Periodic(
        "host_ping",
        "inventory.hostping.host_ping_sync",
        "HOST_PING_INTERVAL_S",
        "pings every machine's host address from its site's worker, the sites spread over the period",
    ),
    Periodic(
        "health_sync",
        "inventory.health.health_sync",
        "HEALTH_SYNC_INTERVAL_S",
        "re-reads every machine's sensors and event log, spread over the period",
    ),
    Periodic(
        "pxe_reconcile",
        "installs.discovery_boot.reconcile_all",
        "PXE_RECONCILE_INTERVAL_S",
        "brings every site's TFTP root in line with its discovery setting and inventory, from its own worker",
    ),
    Periodic(
        "ssh_sessions",
        "access.retention.sweep",
        "SSH_SESSION_SWEEP_INTERVAL_S",
        "ends SSH sessions whose process died, deletes sessions and recordings past their retention",
    ),
    Periodic(
        "webhooks",
        "webhooks.delivery.sweep",
        "WEBHOOK_SWEEP_INTERVAL_S",
        "queues again the webhook deliveries that are due and whose job was lost",
    ),
)
BY_NAME = {p.name: p for p in SCHEDULE}


def run(name: str):
    """The RQ job of every periodic job: run it and record the run, so /healthz can tell when one stops."""
    job = BY_NAME[name]
    PeriodicRun.objects.bulk_create([PeriodicRun(name=name)], ignore_conflicts=True)
    rows = PeriodicRun.objects.filter(name=name)
    started = time.monotonic()
    rows.update(last_started_at=timezone.now())
    try:
        result = import_string(job.func)()
    except Exception as exc:  # whatever the job raised is counted and shown on /healthz, then raised on to RQ
        rows.update(failures=F("failures") + 1, last_error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    rows.update(
        runs=F("runs") + 1,
        last_finished_at=timezone.now(),
        last_duration_ms=round((time.monotonic() - started) * 1000, 1),
        last_error="",
    )
    return result


def overdue_after_s(every_s: int) -> float:
    """A job is overdue when its last run ended longer ago than two periods plus the grace: one period
    late is a slow run or a worker restarting, two are a stopped scheduler or no worker at all."""
    return 2 * every_s + settings.PERIODIC_GRACE_S


def health() -> dict:
    """Each periodic job's last run, for /healthz: {"sweep": {..., "overdue": False}, ...}."""
    now = timezone.now()
    rows = {r.name: r for r in PeriodicRun.objects.filter(name__in=BY_NAME)}
    report = {}
    for job in SCHEDULE:
        row = rows.get(job.name)
        last = row.last_finished_at if row else None
        age = (now - last).total_seconds() if last else None
        report[job.name] = {
            "every_s": job.every_s,
            "last_run_at": last.isoformat() if last else None,
            "last_run_s": round(age, 1) if age is not None else None,
            "runs": row.runs if row else 0,
            "failures": row.failures if row else 0,
            "last_error": row.last_error if row else "",
            "overdue": age is None or age > overdue_after_s(job.every_s),
        }
    return report


def scheduler_health(connection) -> dict:
    """The scheduler processes alive now, by their heartbeat in Redis."""
    beats = [s.last_heartbeat for s in CronScheduler.all(connection)]
    ages = [(timezone.now() - b).total_seconds() for b in beats if b is not None]
    alive = [a for a in ages if a < SCHEDULER_STALE_S]
    return {"running": len(alive), "last_heartbeat_s": round(min(ages), 1) if ages else None, "ok": bool(alive)}


class PeriodCronJob(CronJob):
    """A CronJob that runs at the start of every period of its interval (epoch-aligned), as one RQ job
    per period whose id names the period: enqueueing a period twice is refused by Redis itself."""

    def period(self, at: datetime) -> int:
        return int(at.timestamp() // self.interval)

    def should_run(self) -> bool:
        return self.next_enqueue_time is None or datetime.now(UTC) >= self.next_enqueue_time

    def get_next_enqueue_time(self) -> datetime:
        base = self.latest_enqueue_time or datetime.now(UTC)
        return datetime.fromtimestamp((self.period(base) + 1) * self.interval, UTC)

    def enqueue(self, connection):
        job_id = f"periodic-{self.name.replace('_', '-')}-{self.period(datetime.now(UTC))}"
        queue = Queue(self.queue_name, connection=connection)
        try:
            job = queue.enqueue(self.func, args=self.args, job_id=job_id, unique=True, **self.job_options)
        except DuplicateJobError:
            log.debug("%s: another scheduler enqueued this period already", job_id)
            return None
        log.debug("enqueued %s", job_id)
        return job


def cron_job(job: Periodic) -> PeriodCronJob:
    every = job.every_s
    return PeriodCronJob(
        queue_name=queues.DEFAULT_QUEUE,
        func=run,
        args=(job.name,),
        interval=every,
        name=job.name,
        job_timeout=settings.RQ_JOB_TIMEOUT_S,
        # Kept one more period after it ran, so the id still refuses a second enqueue of this period.
        result_ttl=2 * every,
        # Still queued when its period is over (no worker alive): dropped, the next period's run does its
        # work; runs never pile up behind a dead worker.
        ttl=every,
        failure_ttl=86400,
    )


class Scheduler(CronScheduler):
    """``manage.py scheduler``: the periodic jobs of SCHEDULE, and delayed RQ jobs onto their queues.

    RQ's own loop (CronScheduler.start) ends at the first Redis error and keeps each job's timing only
    in memory; this loop waits out a Redis restart and picks up where the schedule says it should be."""

    NAME_PREFIX = "provisioner-scheduler:"

    def __init__(self, connection: redis.Redis, *, tick_s: float = TICK_S):
        super().__init__(connection=connection, logging_level=logging.INFO)
        self.name = f"{self.NAME_PREFIX}{self.name}"
        self._cron_jobs = [cron_job(job) for job in SCHEDULE]
        self.tick_s = tick_s
        self.stopping = False
        self.delayed: RQScheduler | None = None
        self.delayed_names: tuple[str, ...] = ()
        self.queue_names: tuple[str, ...] = ()
        self.queues_read_at = 0.0
        self.redis_down_since: float | None = None
        self.registered = False

    # --- delayed jobs (enqueue_in / enqueue_at) -------------------------------------------------

    def site_queue_names(self) -> tuple[str, ...]:
        if self.queue_names and time.monotonic() - self.queues_read_at < QUEUES_REFRESH_S:
            return self.queue_names
        try:
            close_old_connections()
            slugs = sorted(Site.objects.values_list("slug", flat=True))
        except DatabaseError as exc:  # keep serving the queues known so far
            log.warning(
                "scheduler: cannot read the sites (%s); keeping the %d queues known",
                type(exc).__name__,
                len(self.queue_names),
            )
            close_old_connections()
            return self.queue_names or (queues.DEFAULT_QUEUE, queues.WEBHOOKS_QUEUE)
        self.queue_names = (queues.DEFAULT_QUEUE, queues.WEBHOOKS_QUEUE, *(queues.site_queue_name(s) for s in slugs))
        self.queues_read_at = time.monotonic()
        return self.queue_names

    def promote_delayed(self) -> None:
        names = self.site_queue_names()
        if self.delayed is None or names != self.delayed_names:
            if self.delayed is not None:
                self.delayed.release_locks()
            self.delayed = RQScheduler(list(names), connection=self.connection, interval=1, name=self.name)
            self.delayed_names = names
        # One lock per queue, held (and refreshed here) by one scheduler at a time; after a Redis
        # restart the lock is free again and taken on the next tick.
        if self.delayed.acquire_locks() != set(names):
            self.free_dead_schedulers_locks(names)
        self.delayed.enqueue_scheduled_jobs()

    def free_dead_schedulers_locks(self, names) -> None:
        """A scheduler killed outright keeps its queue locks for RQ's lock time (a minute), and delayed
        jobs would wait that long after every restart: free the locks of a scheduler of ours that stopped
        beating. Only ours: they beat every tick, so silence means death."""
        registry = cron_scheduler_registry.get_registry_key()
        for name in names:
            key = RQScheduler.get_locking_key(name)
            holder = self.connection.get(key)
            holder = holder.decode() if isinstance(holder, bytes) else holder
            if not holder or holder == self.name or not holder.startswith(self.NAME_PREFIX):
                continue
            beat = self.connection.zscore(registry, holder)
            if beat is None or time.time() - beat > SCHEDULER_STALE_S:
                if release_lock(self.connection, key, holder):
                    self.log.warning("scheduler: freed the lock of %s on %s (it stopped beating)", holder, name)

    # --- the loop ---------------------------------------------------------------------------------

    def tick(self) -> None:
        if not self.registered:
            self.register_birth()
            self.registered = True
            for job in self._cron_jobs:
                self.log.info("scheduler: %s every %d s on %s", job.name, job.interval, job.queue_name)
        self.promote_delayed()
        if self.enqueue_jobs():
            self.save()
        self.heartbeat()

    def start(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.log.info("scheduler %s: starting", self.name)
        backoff = self.tick_s
        try:
            while not self.stopping:
                try:
                    self.tick()
                except REDIS_DOWN as exc:
                    if self.redis_down_since is None:
                        self.redis_down_since = time.monotonic()
                        self.log.warning("scheduler: Redis is unreachable (%s); retrying until it is back", exc)
                    self.delayed = None  # its locks went with Redis, or will expire
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    self._sleep(backoff)
                    continue
                if self.redis_down_since is not None:
                    self.log.warning("scheduler: Redis is back after %.1f s", time.monotonic() - self.redis_down_since)
                    self.redis_down_since = None
                backoff = self.tick_s
                self._sleep(max(0.05, min(self.tick_s, self.calculate_sleep_interval())))
        finally:
            self.log.info("scheduler %s: stopping", self.name)
            try:
                if self.delayed is not None:
                    self.delayed.release_locks()
                self.register_death()
            except REDIS_DOWN:  # its locks and entry expire by themselves
                pass

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))

    def _stop(self, signum, frame) -> None:
        self.stopping = True
