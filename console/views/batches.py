"""The batches pages: every batch with its progress, and one batch with its installs, live. Pausing, resuming
and cancelling post to the batch actions (console/views/installs.py), which call the audited service."""

from __future__ import annotations

from collections import defaultdict

from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import get_object_or_404, render
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from accounts.roles import Role, has_role, require_role
from console.queries import installs_for_pages
from installs.models import Batch, BatchState, Event, Install, InstallState

BATCHES_PER_PAGE = 50
INSTALLS_PER_PAGE = 200
# The order counts are shown in: the forward path, then how an install may end.
STATE_ORDER = list(InstallState.values)


def with_progress(batches: list[Batch]) -> list[Batch]:
    """Each batch with its installs counted by state: one query for all of them.
    Sets ``counts`` [(state, n)] (states it has, in order), ``total``, ``ended``, ``open``, ``succeeded``, ``failed``
    and which actions its state allows."""
    counted: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (
        Install.objects.filter(batch__in=[b.pk for b in batches])
        .values_list("batch_id", "state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for batch_id, state, n in rows:
        counted[batch_id][state] = n
    for b in batches:
        by_state = counted[b.pk]
        b.counts = [(s, by_state[s]) for s in STATE_ORDER if by_state.get(s)]
        b.total = sum(by_state.values())
        b.succeeded = by_state.get(InstallState.SUCCEEDED, 0)
        b.failed = by_state.get(InstallState.FAILED, 0)
        b.ended = b.succeeded + b.failed + by_state.get(InstallState.CANCELLED, 0)
        b.open = b.total - b.ended
        b.can_pause = b.state == BatchState.RUNNING
        b.can_resume = b.state == BatchState.PAUSED
        b.can_cancel = b.state in (BatchState.RUNNING, BatchState.PAUSED)
    return batches


def _last_event_id() -> int:
    # The live stream replays from here, so what changes between render and connect is not missed.
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0


@require_GET
@require_role(Role.VIEWER)
def batch_list(request):
    state = request.GET.get("state", "")
    batches = Batch.objects.order_by("-id")
    if state in BatchState.values:
        batches = batches.filter(state=state)
    else:
        state = ""
    page = Paginator(batches, BATCHES_PER_PAGE).get_page(request.GET.get("page"))
    page.object_list = with_progress(list(page.object_list))
    context = {
        "page": page,
        "state": state,
        "states": BatchState.values,
        "querystring": urlencode({"state": state} if state else {}),
    }
    if request.GET.get("partial"):
        return render(request, "installs/_batch_rows.html", context)
    return render(request, "installs/batch_list.html", {**context, "last_event_id": _last_event_id()})


@require_GET
@require_role(Role.VIEWER)
def batch_detail(request, batch_id: int):
    batch = with_progress([get_object_or_404(Batch, pk=batch_id)])[0]
    installs = installs_for_pages().filter(batch=batch).order_by("pk")
    page = Paginator(installs, INSTALLS_PER_PAGE).get_page(request.GET.get("page"))
    context = {"batch": batch, "page": page, "can_act": has_role(request.user, Role.TECHNICIAN)}
    if request.GET.get("partial"):
        return render(request, "installs/_batch_live.html", context)
    return render(request, "installs/batch_detail.html", {**context, "last_event_id": _last_event_id()})
