"""Profiles and the workflow library, read-only: what a profile installs and the workflow its installs run.
Editing is the admin's (and the REST API's and `manage.py workflow`)."""

from __future__ import annotations

from django.db.models import Count, Max
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from accounts.roles import Role, require_role
from installs import library
from installs import workflow as wf
from installs.models import Script, Workflow
from inventory.models import OSProfile


def _flow(profile: OSProfile) -> tuple[wf.Workflow | None, str, list[str]]:
    """The profile's workflow as its next install would run it, its document, and problems (if it cannot)."""
    try:
        flow = library.for_profile(profile)
    except wf.WorkflowInvalid as exc:
        return None, "", exc.messages
    if profile.workflow and flow.version:
        row = Workflow.objects.filter(name=flow.name, version=flow.version).first()
        return flow, row.document if row else "", []
    return flow, wf.stock_text_named(flow.name) if wf.is_stock(flow.name) else wf.stock_text(profile.method), []


@require_GET
@require_role(Role.VIEWER)
def profile_list(request):
    profiles = OSProfile.objects.order_by("name").only("name", "method", "description", "workflow")
    return render(request, "inventory/profile_list.html", {"profiles": profiles})


@require_GET
@require_role(Role.VIEWER)
def profile_detail(request, name: str):
    profile = get_object_or_404(OSProfile, name=name)
    flow, document, problems = _flow(profile)
    return render(
        request,
        "inventory/profile_detail.html",
        {"profile": profile, "flow": flow, "document": document, "problems": problems},
    )


@require_GET
@require_role(Role.VIEWER)
def workflow_list(request):
    workflows = Workflow.objects.values("name").annotate(latest=Max("version"), versions=Count("pk")).order_by("name")
    scripts = Script.objects.values("name").annotate(latest=Max("version"), versions=Count("pk")).order_by("name")
    used = {}
    for name, workflow in OSProfile.objects.exclude(workflow="").values_list("name", "workflow"):
        used.setdefault(workflow, []).append(name)
    return render(
        request,
        "installs/workflow_list.html",
        {"workflows": [{**w, "profiles": used.get(w["name"], [])} for w in workflows], "scripts": scripts},
    )


@require_GET
@require_role(Role.VIEWER)
def workflow_detail(request, name: str):
    rows = Workflow.objects.filter(name=name).order_by("-version")
    version = request.GET.get("version", "")
    row = rows.filter(version=int(version)).first() if version.isdigit() else rows.first()
    if row is None:
        row = get_object_or_404(rows, pk=-1)
    try:
        flow, problems = library.check(row.document), []
    except wf.WorkflowInvalid as exc:
        flow, problems = None, exc.messages
    return render(
        request,
        "installs/workflow_detail.html",
        {
            "row": row,
            "flow": flow,
            "problems": problems,
            "versions": rows.values_list("version", "created_at", "created_by_label"),
            "profiles": OSProfile.objects.filter(workflow=name).values_list("name", flat=True),
        },
    )
