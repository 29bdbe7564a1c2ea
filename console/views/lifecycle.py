"""A machine's lifecycle on its pages: a person's status change (mark broken or fixed, maintenance), and its
hardware as commissioning recorded it, version by version. The operations (commission, test, deploy, release)
go through the machine list's action form (views/inventory.py), one machine or many, with its confirmations."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import Role, require_role
from audit.service import Actor
from console import hardware, lifecycle_actions
from inventory.models import MachineFacts

from .inventory import _machine_or_404

#: Versions the hardware page lists (newest first); older ones stay reachable by their number.
VERSIONS_SHOWN = 100


@require_POST
@require_role(Role.TECHNICIAN)
def machine_mark(request, hostname: str):
    """Mark broken or fixed, enter or leave maintenance: the status changes at once, audited with the reason."""
    machine = _machine_or_404(hostname)
    back = redirect("inventory:machine-detail", hostname=machine.hostname)
    try:
        req = lifecycle_actions.parse(request.POST.get("action", ""), reason=request.POST.get("reason", ""))
    except lifecycle_actions.Invalid as exc:
        messages.error(request, exc.problem if exc.field == "reason" else str(exc))
        return back
    if req.is_operation:
        messages.error(request, f"{req.spec.label} runs an operation: use its button on the machine page.")
        return back
    try:
        machine = lifecycle_actions.mark(machine.pk, req, Actor.for_user(request.user))
    except lifecycle_actions.Refused as exc:
        for problem in exc.problems:
            messages.error(request, problem)
    else:
        messages.success(request, f"{machine.hostname} is {machine.status}.")
    return back


@require_GET
@require_role(Role.VIEWER)
def machine_hardware(request, hostname: str, version: int | None = None):
    """The facts of one commissioning (the latest unless ``version``) as tables, and every version with what
    changed since the one before."""
    machine = _machine_or_404(hostname)
    versions = MachineFacts.objects.filter(machine=machine)
    shown = (versions.filter(version=version) if version is not None else versions.order_by("-version")).first()
    if version is not None and shown is None:
        raise Http404(f"{machine.hostname} has no facts version {version}.")
    listed = []
    for row in versions.defer("facts").order_by("-version")[:VERSIONS_SHOWN]:
        rows, total = hardware.changes(row.changes, hardware.CHANGES_SHOWN)
        listed.append({"row": row, "changes": rows, "total": total, "more": total - len(rows)})
    changes, total = hardware.changes(shown.changes) if shown else ([], 0)
    return render(
        request,
        "inventory/machine_hardware.html",
        {
            "machine": machine,
            "shown": shown,
            "latest": version is None,
            # Before commissioning kept versions, an install's agent left its facts on the machine.
            "facts": hardware.tables(shown.facts if shown else machine.facts),
            "legacy": shown is None and bool(machine.facts),
            "changes": changes,
            "changes_total": total,
            "versions": listed,
            "version_count": versions.count(),
            "nics": list(machine.nics.all()),
            "summary": hardware.summary_line(machine),
        },
    )
