"""/healthz: is this control plane fit to serve? Database, Redis, and for each site whether a worker
serves its queue (by heartbeat) and how deep the queue is. 200 when all is well, else 503."""

from __future__ import annotations

import time

from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

# A worker whose heartbeat is older than this is gone (RQ beats every few seconds while idle).
WORKER_STALE_S = 90


def site_status(conn, slug: str) -> dict:
    from rq import Worker

    from provisioner import queues

    queue = queues.site_queue(slug)
    now = timezone.now()
    beats = []
    for worker in Worker.all(queue=queue, connection=conn):
        if worker.last_heartbeat:
            beats.append((now - worker.last_heartbeat).total_seconds())
    alive = [b for b in beats if b < WORKER_STALE_S]
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
    except Exception as exc:
        report["database"] = {"ok": False, "error": type(exc).__name__}
    try:
        from provisioner import queues

        conn = queues.connection()
        conn.ping()
        report["redis"] = {"ok": True}
    except Exception as exc:
        conn = None
        report["redis"] = {"ok": False, "error": type(exc).__name__}
    report["sites"] = {}
    if conn is not None and report["database"]["ok"]:
        from inventory.models import Site

        for slug in Site.objects.values_list("slug", flat=True):
            report["sites"][slug] = site_status(conn, slug)
    report["ok"] = (
        report["database"]["ok"] and report["redis"]["ok"] and all(s["ok"] for s in report["sites"].values())
    )
    report["took_ms"] = round((time.monotonic() - started) * 1000, 1)
    return JsonResponse(report, status=200 if report["ok"] else 503)
