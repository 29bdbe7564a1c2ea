"""The technician's install pages: the list, one install live, its log, and the buttons that act on
installs, batches and alerts. Each action calls the service function that checks and audits it."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts import preferences
from accounts.roles import Role, has_role, require_role
from audit.service import Actor
from console.install_filters import InstallQuery, install_queryset
from console.queries import installs_for_pages
from installs import alerts, batches, engine
from installs.models import ACTIVE_STATES, TERMINAL_STATES, Alert, Batch, BatchState, Event, Install, InstallState
from installs.states import StepState

# The page shows the newest events; the download has them all.
PAGE_EVENTS = 2000


@require_GET
@require_role(Role.VIEWER)
def install_list(request):
    query = InstallQuery.from_params(request.GET)
    problems = query.problems()
    installs = install_queryset(query) if not problems else Install.objects.none()
    page = Paginator(installs, 50).get_page(request.GET.get("page"))
    if request.GET.get("partial"):
        return render(request, "installs/_install_rows.html", {"page": page}, status=400 if problems else 200)
    context = {
        "page": page,
        "states": InstallState.values,
        "query": query,
        "problems": problems,
        "saved_views": preferences.views_of(request.user, preferences.PageName.INSTALLS),
    }
    return render(request, "installs/install_list.html", context, status=400 if problems else 200)


def stages_of(steps) -> list[dict]:
    """The install's steps grouped by workflow stage, in order: {name, parallel, steps}. Steps of plans made
    before workflows are all in stage 0 and serial: one stage."""
    stages: list[dict] = []
    for step in steps:
        if not stages or stages[-1]["index"] != step.stage:
            stages.append({"index": step.stage, "name": step.stage_name, "parallel": step.parallel, "steps": []})
        stages[-1]["steps"].append(step)
    return stages


@require_GET
@require_role(Role.VIEWER)
def install_detail(request, install_id: int):
    install = get_object_or_404(installs_for_pages(), pk=install_id)
    steps = list(install.steps.order_by("order").defer("params", "result"))
    can_act = has_role(request.user, Role.TECHNICIAN)
    live = {
        "install": install,
        "steps": steps,
        "stages": stages_of(steps),
        "can_cancel": can_act and install.state in ACTIVE_STATES,
        "can_retry": can_act and install.state in TERMINAL_STATES,
        "terminal": install.state in TERMINAL_STATES,
        # The step the install failed at: the header says why once and links to it.
        "failed_step": next(
            (s for s in steps if s.state == StepState.FAILED and s.message == install.failure_message), None
        ),
    }
    if request.GET.get("partial"):
        return render(request, "installs/_install_live.html", live)
    events = list(reversed(install.events.order_by("-id")[:PAGE_EVENTS]))
    total = install.events.count() if len(events) == PAGE_EVENTS else len(events)
    return render(
        request,
        "installs/install_detail.html",
        {
            **live,
            "events": events,
            "hidden_events": total - len(events),
            "last_event_id": events[-1].pk if events else 0,
        },
    )


def event_line(event: Event) -> str:
    step = f" step={event.step_id}" if event.step_id else ""
    return f"{event.at.isoformat()} #{event.pk} {event.kind}{step} {event.message}\n"


@require_GET
@require_role(Role.VIEWER)
def install_log(request, install_id: int):
    install = get_object_or_404(Install.objects.only("pk"), pk=install_id)
    events = install.events.order_by("id").only("pk", "at", "kind", "step_id", "message")
    response = StreamingHttpResponse(
        (event_line(e) for e in events.iterator(chunk_size=2000)), content_type="text/plain; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="install-{install.pk}.log"'
    return response


@require_POST
@require_role(Role.TECHNICIAN)
def install_cancel(request, install_id: int):
    install = get_object_or_404(Install.objects.only("pk"), pk=install_id)
    try:
        engine.cancel(install.pk, actor=Actor.for_user(request.user), why=request.POST.get("why", "")[:500])
    except engine.EngineError as exc:
        messages.warning(request, f"Not cancelled: {exc}")
    else:
        messages.success(request, f"Install {install.pk} cancelled.")
    return redirect("install-detail", install_id=install.pk)


@require_POST
@require_role(Role.TECHNICIAN)
def install_retry(request, install_id: int):
    install = get_object_or_404(Install.objects.only("pk"), pk=install_id)
    try:
        batch = batches.retry(install.pk, Actor.for_user(request.user))
    except batches.InstallRefused as exc:
        for problem in exc.args[0]:
            messages.error(request, problem)
        return redirect("install-detail", install_id=install.pk)
    new = batch.installs.order_by("pk").values_list("pk", flat=True).first()
    messages.success(request, f"Retrying as install {new}.")
    return redirect("install-detail", install_id=new)


BATCH_ACTIONS = {"pause": BatchState.PAUSED, "resume": BatchState.RUNNING, "cancel": BatchState.CANCELLED}


def _safe_next(request, default: str = "/") -> str:
    target = request.POST.get("next", "")
    return target if target.startswith("/") and not target.startswith("//") else default


@require_POST
@require_role(Role.TECHNICIAN)
def batch_action(request, batch_id: int, action: str):
    if action not in BATCH_ACTIONS:
        return HttpResponseBadRequest("pause, resume or cancel")
    batch = get_object_or_404(Batch.objects.only("pk", "name"), pk=batch_id)
    try:
        batches.set_batch_state(
            batch.pk, BATCH_ACTIONS[action], Actor.for_user(request.user), request.POST.get("why", "")[:255]
        )
    except batches.InstallRefused as exc:
        for problem in exc.args[0]:
            messages.warning(request, problem)
    else:
        messages.success(request, f"{batch}: {action} done.")
    return redirect(_safe_next(request))


@require_POST
@require_role(Role.TECHNICIAN)
def alert_acknowledge(request, alert_id: int):

    alert = get_object_or_404(Alert.objects.only("pk"), pk=alert_id)
    alerts.acknowledge(alert.pk, Actor.for_user(request.user))
    return redirect(_safe_next(request))
