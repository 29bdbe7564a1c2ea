"""Metrics recorded where their events happen; /metrics (config/metrics.py) serves them.

Two kinds, by where the event happens:

- In this process (prometheus-client's registry): websocket clients and agent progress reports, both
  handled by daphne. Each daphne counts its own; scrape every daphne to see them all.
- Across processes (Redis): BMC commands run in the workers, which serve no HTTP, so each command adds to
  a histogram kept in one Redis hash, and whichever process is scraped reads it back. One pipelined round
  trip per command, beside the guard's own two or three; a Redis restart starts the counts again, which
  Prometheus reads as a counter reset.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable

import redis
from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from . import queues

log = logging.getLogger(__name__)

WEBSOCKET_CLIENTS = Gauge("provisioner_websocket_clients", "Websockets open on this process, by route.", ["socket"])
PROGRESS_REPORTS = Counter(
    "provisioner_agent_progress_reports", "Agent progress reports answered by this process, by outcome.", ["outcome"]
)

BMC_KEY = "provisioner:metrics:bmc"
# A power command answers in well under a second on a healthy BMC; storage and virtual media walk the Redfish
# tree and take tens of seconds on some (Dell iDRAC 9 inserting media fetches the ISO first).
BMC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def counted_socket(name: str, app):
    """Wrap a consumer's ASGI app so that the sockets it accepts count in WEBSOCKET_CLIENTS until they end,
    however they end (the browser leaves, the consumer closes, the consumer fails)."""

    async def counted(scope, receive, send):
        accepted = False

        async def send_counting(message):
            nonlocal accepted
            await send(message)
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                WEBSOCKET_CLIENTS.labels(socket=name).inc()

        try:
            return await app(scope, receive, send_counting)
        finally:
            if accepted:
                WEBSOCKET_CLIENTS.labels(socket=name).dec()

    WEBSOCKET_CLIENTS.labels(socket=name)  # shown as 0 before the first socket
    return counted


def bmc_observer(driver: str) -> Callable[[str, float, BaseException | None], None]:
    """What GuardedDriver calls after each command to a BMC of ``driver``: adds it to the shared histogram."""

    def observe(command: str, seconds: float, error: BaseException | None) -> None:
        bucket = bisect_left(BMC_BUCKETS, seconds)
        pipe = queues.connection().pipeline(transaction=False)
        pipe.hincrby(BMC_KEY, f"b|{driver}|{command}|{bucket}", 1)
        pipe.hincrbyfloat(BMC_KEY, f"s|{driver}|{command}", seconds)
        if error is not None:
            pipe.hincrby(BMC_KEY, f"e|{driver}|{getattr(error, 'reason', 'Unexpected')}", 1)
        try:
            pipe.execute()
        except redis.RedisError as exc:  # a lost sample, never a failed command
            log.debug("BMC metrics not recorded: %s", exc)

    return observe


def bmc_families(conn) -> list:
    """The BMC histogram and error counter from Redis, cumulative as Prometheus wants them."""
    counts: dict[tuple[str, str], list[int]] = {}
    sums: dict[tuple[str, str], float] = {}
    errors = CounterMetricFamily(
        "provisioner_bmc_errors",
        "BMC commands that failed, by driver and reason (all processes).",
        labels=["driver", "reason"],
    )
    for field, value in sorted(conn.hgetall(BMC_KEY).items()):
        kind, *parts = field.decode().split("|")
        if kind == "b":
            driver, command, bucket = parts
            counts.setdefault((driver, command), [0] * (len(BMC_BUCKETS) + 1))[int(bucket)] += int(value)
        elif kind == "s":
            sums[tuple(parts)] = float(value)
        elif kind == "e":
            errors.add_metric(parts, int(value))
    latency = HistogramMetricFamily(
        "provisioner_bmc_command_seconds",
        "BMC command latency, by driver and command (all processes).",
        labels=["driver", "command"],
    )
    for labels, per_bucket in sorted(counts.items()):
        cumulative, total = [], 0
        for bound, n in zip((*map(str, BMC_BUCKETS), "+Inf"), per_bucket, strict=True):
            total += n
            cumulative.append((bound, total))
        latency.add_metric(list(labels), cumulative, sum_value=sums.get(labels, 0.0))
    return [latency, errors]
