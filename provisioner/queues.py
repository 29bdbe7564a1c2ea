"""RQ queues: one per site, so the worker on each datacentre's PXE host serves only its own
machines, plus ``default`` for control-plane work (power sync scheduling, alerts)."""

from functools import cache

import redis
from django.conf import settings
from rq import Queue

DEFAULT_QUEUE = "default"


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
