"""/metrics for Prometheus: what the database and Redis hold, read at scrape time, and what this process counted.

Facts that span processes (installs, steps, failures, queues, workers, the periodic jobs, BMC commands) are read
from where they are true when Prometheus asks, so every daphne answers the same for them; only websocket clients
and progress reports are this process's own (core/metrics.py). README "Metrics" lists every series.

Access: ``Authorization: Bearer <METRICS_TOKEN>``, or a client address inside METRICS_ALLOWED_CIDRS; a bearer
token that is sent must be the right one, wherever it comes from. Anything else is a 403; with neither
configured, /metrics is off (404).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from datetime import timedelta
from functools import cache

import redis
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from rq import Queue, Worker
from rq.job import Job

from core import metrics, problems, queues
from installs import periodic
from installs.models import Install, Step
from installs.states import STEP_DONE_STATES, InstallState
from inventory.models import Site

log = logging.getLogger(__name__)

# Steps run from under a second (a boot device set) to an hour (an image written over a slow link).
STEP_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


@cache
def _networks(cidrs: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def refusal(request) -> str:
    """Why this request may not read /metrics ("" when it may); raises Http404 when /metrics is off."""
    token = settings.METRICS_TOKEN
    networks = _networks(tuple(settings.METRICS_ALLOWED_CIDRS))
    if not token and not networks:
        raise Http404("metrics are off")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        if token and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return ""
        return "the bearer token is not the metrics token"
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return "no client address"
    if any(address in network for network in networks):
        return ""
    return "send the metrics token, or scrape from an address in METRICS_ALLOWED_CIDRS"


@never_cache
@require_GET
def metrics_view(request):
    why = refusal(request)
    if why:
        return problems.response(403, why)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


class ProvisionerCollector:
    """The series read at scrape time. A source that cannot be read leaves its series out and says so in
    ``provisioner_metrics_source_up``, so a dead Redis shows as such rather than as empty queues."""

    def describe(self):
        return []  # nothing to read at registration (it would query the database at import)

    def collect(self):
        up = GaugeMetricFamily(
            "provisioner_metrics_source_up", "Whether this scrape could read the source.", labels=["source"]
        )
        for source, read in (("database", self._database), ("redis", self._redis)):
            try:
                families = list(read())
            except (DatabaseError, redis.RedisError, OSError) as exc:
                log.warning("metrics: could not read the %s: %s", source, type(exc).__name__)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up

    def _database(self):
        yield _installs()
        yield _failures()
        yield _step_durations()
        yield from _periodic()

    def _redis(self):
        conn = queues.connection()
        yield from _queues(conn)
        yield _workers(conn)
        yield _scheduler(conn)
        yield from metrics.bmc_families(conn)


def _installs() -> GaugeMetricFamily:
    family = GaugeMetricFamily("provisioner_installs", "Installs by state and profile.", labels=["state", "profile"])
    rows = Install.objects.values_list("state", "profile__name").annotate(n=Count("pk")).order_by("state")
    for state, profile, n in rows:
        family.add_metric([state, profile], n)
    return family


def _failures() -> CounterMetricFamily:
    family = CounterMetricFamily(
        "provisioner_install_failures",
        "Failed installs by failure reason (falls when old installs are pruned).",
        labels=["reason"],
    )
    rows = (
        Install.objects.filter(state=InstallState.FAILED)
        .values_list("failure_reason")
        .annotate(n=Count("pk"))
        .order_by("failure_reason")
    )
    for reason, n in rows:
        family.add_metric([reason or "Unknown"], n)
    return family


def _step_durations() -> HistogramMetricFamily:
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    buckets = {f"le{i}": Count("pk", filter=Q(took__lte=timedelta(seconds=b))) for i, b in enumerate(STEP_BUCKETS)}
    rows = (
        Step.objects.filter(state__in=STEP_DONE_STATES, started_at__isnull=False, finished_at__isnull=False)
        .annotate(took=duration)
        .values("kind", "state")
        .annotate(n=Count("pk"), total=Sum("took"), **buckets)
        .order_by("kind", "state")
    )
    family = HistogramMetricFamily(
        "provisioner_step_duration_seconds",
        "How long finished steps ran, by kind and outcome.",
        labels=["kind", "state"],
    )
    for row in rows:
        cumulative = [(str(b), row[f"le{i}"]) for i, b in enumerate(STEP_BUCKETS)] + [("+Inf", row["n"])]
        total = row["total"].total_seconds() if row["total"] is not None else 0.0
        family.add_metric([row["kind"], row["state"]], cumulative, sum_value=total)
    return family


def _periodic():
    last = GaugeMetricFamily(
        "provisioner_periodic_last_success_age_seconds",
        "Seconds since each periodic job last ran to the end.",
        labels=["job"],
    )
    lag = GaugeMetricFamily(
        "provisioner_periodic_lag_seconds",
        "How far each periodic job is behind its schedule: seconds since its last run, less its period (0 on time).",
        labels=["job"],
    )
    every = GaugeMetricFamily("provisioner_periodic_interval_seconds", "Each periodic job's period.", labels=["job"])
    failures = CounterMetricFamily(
        "provisioner_periodic_failures", "Runs of each periodic job that ended in an error.", labels=["job"]
    )
    for name, job in periodic.health().items():
        every.add_metric([name], job["every_s"])
        failures.add_metric([name], job["failures"])
        if job["last_run_s"] is not None:  # never ran: no age to give (healthz calls it overdue)
            last.add_metric([name], job["last_run_s"])
            lag.add_metric([name], max(0.0, job["last_run_s"] - job["every_s"]))
    return [last, lag, every, failures]


def _queues(conn):
    depth = GaugeMetricFamily("provisioner_queue_depth", "Jobs waiting on each RQ queue.", labels=["queue"])
    oldest = GaugeMetricFamily(
        "provisioner_queue_oldest_job_age_seconds",
        "Seconds the job at the head of each queue has waited (0 empty).",
        labels=["queue"],
    )
    names = {q.name for q in Queue.all(connection=conn)} | {queues.DEFAULT_QUEUE}
    names |= {queues.site_queue_name(slug) for slug in Site.objects.values_list("slug", flat=True)}
    now = timezone.now()
    for name in sorted(names):
        queue = Queue(name, connection=conn)
        depth.add_metric([name], queue.count)
        head = queue.get_job_ids(0, 1)
        job = Job.fetch(head[0], connection=conn) if head and conn.exists(Job.key_for(head[0])) else None
        age = (now - job.enqueued_at).total_seconds() if job is not None and job.enqueued_at else 0.0
        oldest.add_metric([name], max(0.0, age))
    return [depth, oldest]


def _workers(conn) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "provisioner_worker_heartbeat_age_seconds",
        "Seconds since each registered RQ worker's last heartbeat.",
        labels=["worker", "queues"],
    )
    now = timezone.now()
    for worker in Worker.all(connection=conn):
        if worker.last_heartbeat is not None:
            age = (now - worker.last_heartbeat).total_seconds()
            family.add_metric([worker.name, ",".join(worker.queue_names())], max(0.0, age))
    return family


def _scheduler(conn) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "provisioner_scheduler_heartbeat_age_seconds", "Seconds since the freshest scheduler process last beat."
    )
    age = periodic.scheduler_health(conn)["last_heartbeat_s"]
    if age is not None:
        family.add_metric([], age)
    return family


REGISTRY.register(ProvisionerCollector())
