"""The dashboard: what is happening now, across every site."""

from django.db.models import Count, Q
from django.shortcuts import render
from django.views.decorators.http import require_GET
from rq import Worker

from accounts.roles import Role, has_role, require_role
from core import queues
from installs.models import ACTIVE_STATES, TERMINAL_STATES, Alert, Batch, BatchState, Event, Install, InstallState
from inventory.models import Site

IN_FLIGHT_SHOWN = 50
FAILURES_SHOWN = 10
ALERTS_SHOWN = 20
BATCHES_SHOWN = 20


def site_workers(sites) -> list[dict]:
    """Each site's RQ workers and queue depth, read from Redis (not the database). A site whose
    worker is gone still takes install requests; they wait in the queue, which is what this shows."""

    rows = []
    try:
        for site in sites:
            queue = queues.site_queue(site.slug)
            workers = Worker.all(connection=queue.connection, queue=queue)
            rows.append(
                {
                    "site": site,
                    "queue": queue.name,
                    "depth": queue.count,
                    "workers": len(workers),
                    "busy": sum(1 for w in workers if w.get_state() == "busy"),
                }
            )
    except Exception as exc:  # Redis down is itself the news the dashboard must show
        return [{"site": s, "queue": s.queue_name, "error": str(exc)} for s in sites]
    return rows


@require_GET
@require_role(Role.VIEWER)
def home(request):
    counts = dict(
        Install.objects.filter(Q(state__in=ACTIVE_STATES) | Q(state__in=TERMINAL_STATES))
        .values_list("state")
        .annotate(n=Count("id"))
        .order_by()
    )
    in_flight = list(
        Install.objects.filter(state__in=ACTIVE_STATES)
        .select_related("machine", "profile")
        .only(
            "pk",
            "purpose",
            "workflow",
            "state",
            "progress",
            "current_step",
            "started_at",
            "created_at",
            "machine__hostname",
            "profile__name",
            "batch_id",
        )
        .order_by("-id")[:IN_FLIGHT_SHOWN]
    )
    batches = list(
        Batch.objects.filter(state__in=[BatchState.RUNNING, BatchState.PAUSED])
        .annotate(
            total=Count("installs"),
            ended=Count("installs", filter=Q(installs__state__in=TERMINAL_STATES)),
            failed=Count("installs", filter=Q(installs__state=InstallState.FAILED)),
        )
        .order_by("-id")[:BATCHES_SHOWN]
    )
    failures = list(
        Install.objects.filter(state=InstallState.FAILED)
        .select_related("machine")
        .only("pk", "failure_reason", "failure_message", "finished_at", "machine__hostname")
        .order_by("-finished_at", "-id")[:FAILURES_SHOWN]
    )
    open_alerts = list(
        Alert.objects.filter(acknowledged_at__isnull=True).select_related("machine").order_by("-id")[:ALERTS_SHOWN]
    )
    sites = list(Site.objects.order_by("slug"))
    # The live stream replays from here, so what changes between render and connect is not missed.
    last_event_id = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    context = {
        "last_event_id": last_event_id,
        "counts": [(s, counts.get(s, 0)) for s in InstallState.values],
        "active_total": sum(counts.get(s, 0) for s in ACTIVE_STATES),
        "in_flight": in_flight,
        "batches": batches,
        "failures": failures,
        "alerts": open_alerts,
        "workers": site_workers(sites),
        "can_act": has_role(request.user, Role.TECHNICIAN),
        "is_admin": has_role(request.user, Role.ADMIN),
    }
    template = "_dashboard_live.html" if request.GET.get("partial") else "dashboard.html"
    return render(request, template, context)
