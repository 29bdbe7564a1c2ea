"""The audit review page: filter, search, paginate, export what you see as CSV."""

from datetime import datetime, time

from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import render
from django.utils import timezone

from accounts.roles import Role, require_role
from audit.models import ActorKind, AuditEntry
from core.csv_export import streaming_csv
from installs.models import Install
from inventory.models import BMC, NIC, Machine

PAGE_SIZE = 100
# The engine's moves of an install from state to state: most entries after a rack is installed, and each is
# in the install's own log too. Hidden unless asked for.
ENGINE_TRANSITION = Q(actor_kind=ActorKind.SYSTEM, action="install.transition")


def _date(value: str, end: bool = False):
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except (TypeError, ValueError):
        return None
    return timezone.make_aware(datetime.combine(day, time.max if end else time.min))


def filtered(params) -> tuple:
    """The entries matching the query string, and the cleaned filters (for the form and links)."""
    entries = AuditEntry.objects.all()
    filters = {
        k: params.get(k, "").strip()
        for k in ("actor", "action", "machine", "site", "q", "since", "until", "object_type", "object_id", "kind")
    }
    filters["transitions"] = params.get("transitions") == "1" or filters["action"].startswith("install.transition")
    if not filters["transitions"]:
        entries = entries.exclude(ENGINE_TRANSITION)
    if filters["actor"]:
        entries = entries.filter(actor_label__icontains=filters["actor"])
    if filters["kind"] in ActorKind.values:
        entries = entries.filter(actor_kind=filters["kind"])
    if filters["action"]:
        entries = entries.filter(action__startswith=filters["action"])
    if filters["object_type"]:
        entries = entries.filter(object_type=filters["object_type"])
    if filters["object_id"]:
        entries = entries.filter(object_id=filters["object_id"])
    if filters["machine"]:
        entries = _for_machine(entries, filters["machine"])
    if filters["site"]:
        entries = _for_site(entries, filters["site"])
    if since := _date(filters["since"]):
        entries = entries.filter(at__gte=since)
    if until := _date(filters["until"], end=True):
        entries = entries.filter(at__lte=until)
    if filters["q"]:
        q = filters["q"]
        entries = entries.filter(
            Q(object_label__icontains=q)
            | Q(action__icontains=q)
            | Q(actor_label__icontains=q)
            | Q(details__icontains=q)
        )
    return entries.order_by("-id"), filters


def _for_machine(entries, hostname: str):
    """Entries about the machine itself, its NICs, BMC and installs."""

    machine = Machine.objects.filter(hostname=hostname.lower()).first()
    if machine is None:
        return entries.none()
    ids = {
        "inventory.machine": [machine.pk],
        "inventory.nic": list(NIC.objects.filter(machine=machine).values_list("pk", flat=True)),
        "inventory.bmc": list(BMC.objects.filter(machine=machine).values_list("pk", flat=True)),
        "installs.install": list(Install.objects.filter(machine=machine).values_list("pk", flat=True)),
    }
    condition = Q()
    for object_type, pks in ids.items():
        if pks:
            condition |= Q(object_type=object_type, object_id__in=[str(pk) for pk in pks])
    return entries.filter(condition)


def _for_site(entries, slug: str):

    machines = [str(pk) for pk in Machine.objects.filter(rack__site__slug=slug).values_list("pk", flat=True)]
    installs = [str(pk) for pk in Install.objects.filter(machine__rack__site__slug=slug).values_list("pk", flat=True)]
    return entries.filter(
        Q(object_type="inventory.machine", object_id__in=machines)
        | Q(object_type="installs.install", object_id__in=installs)
    )


@require_role(Role.VIEWER)
def audit_log(request):
    entries, filters = filtered(request.GET)
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "audit/auditentry_list.html",
        {"page": page, "filters": filters, "query": query.urlencode(), "kinds": ActorKind.values},
    )


@require_role(Role.VIEWER)
def audit_export(request):
    """The filtered view as CSV, streamed, every cell formula-escaped."""
    entries, _ = filtered(request.GET)
    header = ["time", "actor_kind", "actor", "action", "object_type", "object_id", "object", "details", "source_ip"]
    rows = (
        (e.at.isoformat(), e.actor_kind, e.actor_label, e.action, e.object_type, e.object_id, e.object_label,
         e.details, e.source_ip)
        for e in entries.iterator(chunk_size=2000)
    )  # fmt: skip
    return streaming_csv(header, rows, filename=f"audit-{timezone.now():%Y%m%d-%H%M%S}.csv")
