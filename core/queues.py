"""RQ queues and workers: one queue per site, so the worker on each datacentre's PXE host serves only
its own machines, plus ``default`` for control-plane work (the periodic jobs, alerts)."""

import logging
from datetime import timedelta
from functools import cache

import redis
from django.conf import settings
from django.db import connections, transaction
from rq import Queue, SimpleWorker, Worker, worker_registration

DEFAULT_QUEUE = "default"
# Webhook deliveries (webhooks/): a queue of their own, so a slow or dead receiver never holds up installs.
WEBHOOKS_QUEUE = "webhooks"

log = logging.getLogger(__name__)


@cache
def _connection(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def connection() -> redis.Redis:
    return _connection(settings.REDIS_URL)


def site_queue_name(slug: str) -> str:
    return f"site-{slug}"


def get_queue(name: str = DEFAULT_QUEUE) -> Queue:
    return Queue(name, connection=connection(), default_timeout=settings.RQ_JOB_TIMEOUT_S)


def site_queue(slug: str) -> Queue:
    return get_queue(site_queue_name(slug))


def spread(jobs: list[tuple[str, str]], interval_s: float, func, *, job_prefix: str, result_ttl: int) -> int:
    """Queue ``func(arg)`` for each ``(site slug, arg)`` on that site's queue, spaced evenly over
    ``interval_s`` so a periodic job never asks every BMC or host at once. The job id is ``job_prefix`` and
    the argument: a job still waiting from the last period is replaced, not doubled. Returns how many."""
    spacing = interval_s / max(1, len(jobs))
    for i, (slug, arg) in enumerate(jobs):
        site_queue(slug).enqueue_in(
            timedelta(seconds=i * spacing),
            func,
            arg,
            job_id=f"{job_prefix}{arg}",
            result_ttl=result_ttl,
            failure_ttl=3600,
        )
    return len(jobs)


def on_commit(what: str, enqueue) -> None:
    """Queue work (``enqueue()``) once the current transaction commits. If Redis is unreachable at that
    moment the job is lost, not the request that made the change: it is committed, and the sweeper queues
    again whatever the database says has no job (installs/sweeper.py). Without this a machine's committed
    callback got a 500 during a Redis restart, and its installer reported a failure."""

    def run():
        try:
            enqueue()
        except redis.RedisError as exc:
            log.warning("%s: not queued, Redis is unreachable (%s); the sweeper will queue it", what, exc)

    transaction.on_commit(run)


class ServiceWorker:
    """What RQ's worker needs to run as a service for weeks, against redis-py 8:

    - RQ registers a worker once, when it starts. A Redis restart forgets it while it goes on working,
      and /healthz and django-rq's pages then show no worker for hours: each heartbeat registers the
      worker again when its registration is gone.
    - RQ listens for commands on a pub/sub thread that waits up to 60 s at a time, and redis-py 8 waits
      for that thread at shutdown: SIGTERM took a minute, one time in three. A second at a time instead.
    - Django checks its database connection at each request, and a worker has none: after a database
      failover or restart every later job failed on the dead connection. Checked before each job.
    """

    PUBSUB_WAIT_S = 1

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is None and self.birth_date is not None and not self.connection.exists(self.key):
            self.log.warning("Worker %s: its registration was gone (Redis restarted?); registering again", self.name)
            with self.connection.pipeline() as p:
                p.hset(self.key, mapping=self.serialize())
                worker_registration.register(self, p)
                p.expire(self.key, self.worker_ttl + 60)
                p.execute()
        return super().heartbeat(timeout, pipeline)

    def perform_job(self, job, queue, *args, **kwargs):
        for conn in connections.all(initialized_only=True):
            if conn.connection is not None and not conn.is_usable():
                self.log.warning("Worker %s: the database connection was lost; reconnecting", self.name)
                conn.close()
        return super().perform_job(job, queue, *args, **kwargs)

    def subscribe(self):
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=self.PUBSUB_WAIT_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )


class ProvisionerSimpleWorker(ServiceWorker, SimpleWorker):
    pass


class ProvisionerWorker(ServiceWorker, Worker):
    pass


def worker(names: list[str], *, fork: bool = False) -> Worker:
    """A worker for these queues. It heartbeats every WORKER_HEARTBEAT_S while idle (RQ waits for a job
    worker_ttl - 15 s between beats)."""
    worker_class = ProvisionerWorker if fork else ProvisionerSimpleWorker
    return worker_class(
        [get_queue(n) for n in names], connection=connection(), worker_ttl=settings.WORKER_HEARTBEAT_S + 15
    )
