"""/healthz: is this control plane fit to serve? Database, Redis, the scheduler, each periodic job's last
run, and for each site whether a worker serves its queue (by heartbeat) and how deep the queue is.
200 when all is well, else 503 with the part at fault marked "ok": false."""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from rq import Worker

from core import queues
from installs import periodic
from inventory.models import Site


def site_status(conn, slug: str) -> dict:
    queue = queues.site_queue(slug)
    now = timezone.now()
    beats = []
    for worker in Worker.all(queue=queue, connection=conn):
        if worker.last_heartbeat:
            beats.append((now - worker.last_heartbeat).total_seconds())
    alive = [b for b in beats if b < settings.WORKER_STALE_S]
    return {
        "queue": queue.name,
        "queue_depth": queue.count,
        "workers": len(alive),
        "last_heartbeat_s": round(min(beats), 1) if beats else None,
        "ok": bool(alive),
    }


@never_cache
@require_GET
def healthz(request):
    report: dict = {"ok": True}
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report["database"] = {"ok": True}
    except DatabaseError as exc:
        report["database"] = {"ok": False, "error": type(exc).__name__}
    try:
        conn = queues.connection()
        conn.ping()
        report["redis"] = {"ok": True}
    except (redis.RedisError, OSError) as exc:
        conn = None
        report["redis"] = {"ok": False, "error": type(exc).__name__}
    report["sites"] = {}
    parts = [report["database"]["ok"], report["redis"]["ok"]]
    if conn is not None:
        report["scheduler"] = periodic.scheduler_health(conn)
        parts.append(report["scheduler"]["ok"])
    if report["database"]["ok"]:
        report["periodic"] = periodic.health()
        parts += [not job["overdue"] for job in report["periodic"].values()]
        if conn is not None:
            for slug in Site.objects.values_list("slug", flat=True):
                report["sites"][slug] = site_status(conn, slug)
            parts += [s["ok"] for s in report["sites"].values()]
    report["ok"] = all(parts)
    report["took_ms"] = round((time.monotonic() - started) * 1000, 1)
    return JsonResponse(report, status=200 if report["ok"] else 503)
