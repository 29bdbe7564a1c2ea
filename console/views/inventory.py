"""The technician's machine pages: the list (filters, search, bulk actions, CSV), one machine, racks."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from access.session_views import terminal_panel
from accounts import preferences
from accounts.roles import Role, has_role, require_role
from audit.service import Actor
from console import hardware, lifecycle_actions
from console.columns import MACHINE_COLUMN_KEYS, MACHINE_COLUMNS
from console.filters import DISK_TYPES, SORTS, MachineQuery, machine_queryset, page_rows
from console.racks import GEOMETRY, draw_racks
from core.csv_export import streaming_csv
from core.edge import int_param
from core.text import a
from installs.engine import EngineError, cancel
from installs.library import BOOTS, plan_for
from installs.models import ACTIVE_STATES, Install
from installs.plan import PlanError
from installs.render import PREVIEW_FILES, preview, previews_for
from inventory import credentials_check, health, hostping, lifecycle, power, services, tagging
from inventory.models import (
    BMC,
    CredentialCheck,
    Machine,
    MachineFacts,
    MachineHealth,
    MachineStatus,
    OSProfile,
    PowerState,
    Rack,
    Site,
)
from inventory.protection import REFUSED_WHEN_PROTECTED
from provisioner.bmc import BmcError, Capability, registry
from provisioner.bmc.health import Health, worst
from provisioner.pxe import TemplateError

from . import tags as tag_views
from .serial import machine_panel

#: Event log entries the machine page shows (the API gives all that were kept).
EVENTS_SHOWN = 25

PER_PAGE_CHOICES = (25, 50, 100, 250)
# Bulk actions offered on the list, with what they say in the confirm dialog.
ACTIONS = {
    "install": "Deploy: install with profile",
    "commission": "Commission (record the hardware)",
    "test": "Test hardware",
    "release": "Release (erase every disk)",
    "on": "Power on",
    "off": "Power off",
    "cycle": "Power cycle",
    "pxe": "Boot to PXE once",
    "eject": "Eject virtual media",
    "cancel": "Cancel install",
    "host_ping": "Ping hosts",
    "credentials": "Test BMC credentials (one login each)",
}
# Actions that can wipe or take down a machine: the technician types the hostname (one machine)
# or the number of machines (several) to show they read the list.
CONFIRM_TYPED = frozenset({"install", "off", "cycle", "pxe", "release"})
# The bulk actions that are lifecycle operations (inventory/lifecycle.py), by their lifecycle name: the table
# decides for each machine whether it may.
LIFECYCLE_BULK = {"install": "deploy", "commission": "commission", "test": "test", "release": "release"}


def _page_size(request) -> int:
    try:
        size = int(request.GET.get("per_page", 50))
    except ValueError:
        size = 50
    return size if size in PER_PAGE_CHOICES else 50


@require_GET
@require_role(Role.VIEWER)
def machine_list(request):
    query = MachineQuery.from_params(request.GET)
    per_page = _page_size(request)
    can_act = has_role(request.user, Role.TECHNICIAN)
    # A filter that means nothing lists nothing, with what it takes: never machines the technician did not ask for.
    problems = query.problems()
    page = Paginator([], per_page).get_page(1) if problems else page_rows(query, request.GET.get("page"), per_page)
    for machine in page.object_list:
        machine.hardware_line = hardware.summary_line(machine)
    racks = list(Rack.objects.select_related("site").order_by("site__slug", "name"))
    sites = list({r.site.slug: r.site for r in racks}.values())
    context = {
        "page": page,
        "query": query,
        "querystring": urlencode(query.params(per_page=per_page if per_page != 50 else ""), doseq=True),
        "sort_links": {
            key: urlencode(query.params(sort=("-" if query.sort == key and not query.desc else "") + key), doseq=True)
            for key in SORTS
        },
        "sites": sites,
        "racks": [r for r in racks if not query.site or r.site.slug == query.site],
        "statuses": MachineStatus.values,
        "power_states": PowerState.values,
        "vendors": list(
            Machine.objects.exclude(vendor="").order_by("vendor").values_list("vendor", flat=True).distinct()
        ),
        "profiles": list(OSProfile.objects.order_by("name").values_list("name", flat=True)),
        "boots": BOOTS,
        "per_page": per_page,
        "per_page_choices": PER_PAGE_CHOICES,
        "actions": ACTIONS,
        "confirm_typed": sorted(CONFIRM_TYPED),
        "protected_refuses": sorted(REFUSED_WHEN_PROTECTED),
        "can_act": can_act,
        "problems": problems,
        "disk_types": DISK_TYPES,
        "test_workflows": lifecycle_actions.hardware_test_workflows() if can_act else [],
        # The columns this person chose (accounts/preferences.py); the CSV export has them all.
        "columns": preferences.columns_of(
            request.user, preferences.PageName.MACHINES, allowed=MACHINE_COLUMN_KEYS, default=MACHINE_COLUMN_KEYS
        ),
        "column_choices": MACHINE_COLUMNS,
        **tag_views.list_context(query),
    }
    status = 400 if problems else 200
    if request.headers.get("HX-Request") and request.GET.get("partial") == "rows":
        return render(request, "inventory/_machine_rows.html", context, status=status)
    return render(request, "inventory/machine_list.html", context, status=status)


CSV_COLUMNS = (
    ("hostname", lambda m: m.hostname),
    ("site", lambda m: m.rack.site.slug if m.rack else ""),
    ("rack", lambda m: m.rack.name if m.rack else ""),
    ("position_u", lambda m: m.position_u or ""),
    ("status", lambda m: m.status),
    ("protected", lambda m: "yes" if m.protected else "no"),
    ("power", lambda m: m.power_state),
    ("power_read_at", lambda m: m.power_state_at.isoformat() if m.power_state_at else ""),
    ("vendor", lambda m: m.vendor),
    ("model", lambda m: m.model),
    ("serial", lambda m: m.serial),
    ("pxe_mac", lambda m: m.pxe_mac or ""),
    ("bmc_address", lambda m: _bmc_address(m)),
    ("last_profile", lambda m: m.last_profile or ""),
    ("last_install_state", lambda m: m.last_install_state or ""),
    ("status_reason", lambda m: m.status_reason),
    ("status_changed_at", lambda m: m.status_changed_at.isoformat() if m.status_changed_at else ""),
    ("commissioned_at", lambda m: m.commissioned_at.isoformat() if m.commissioned_at else ""),
    ("cpu_model", lambda m: m.cpu_model),
    ("cpu_cores", lambda m: _blank(m.cpu_cores)),
    ("memory_bytes", lambda m: _blank(m.memory_bytes)),
    ("disks", lambda m: _blank(m.disk_count)),
    ("ssds", lambda m: _blank(m.ssd_count)),
    ("hdds", lambda m: _blank(m.hdd_count)),
    ("nvme_disks", lambda m: _blank(m.nvme_count)),
    ("nic_max_speed_mbps", lambda m: _blank(m.nic_max_speed_mbps)),
    ("tags", lambda m: tagging.text(t.name for t in m.tags.all())),
)


def _blank(number: int | None):
    return "" if number is None else number


def _bmc_address(machine) -> str:
    try:
        return machine.bmc.address
    except BMC.DoesNotExist:
        return ""


@require_GET
@require_role(Role.VIEWER)
def machine_export(request):
    """The current view (filters, search and sort; every page) as CSV, streamed."""
    query = MachineQuery.from_params(request.GET)
    if problems := query.problems():
        return HttpResponseBadRequest(
            "".join(f"Refused: {field}: {problem}\n" for field, problem in problems.items()),
            content_type="text/plain; charset=utf-8",
        )
    machines = machine_queryset(query)
    rows = ([get(machine) for _, get in CSV_COLUMNS] for machine in machines.iterator(chunk_size=2000))
    return streaming_csv([name for name, _ in CSV_COLUMNS], rows, filename="machines.csv")


def expected_confirmation(action: str, machines: list) -> str:
    """What the technician must type before a destructive action: the hostname, or the count."""
    if action not in CONFIRM_TYPED:
        return ""
    return machines[0].hostname if len(machines) == 1 else str(len(machines))


@require_POST
@require_role(Role.TECHNICIAN)
def machine_action(request):
    """A bulk action on the checked machines. Without ``confirmed`` (no JavaScript) it answers with
    the confirm page; the typed confirmation is checked here whatever the browser did."""
    action = request.POST.get("action", "")
    if action not in ACTIONS:
        return HttpResponseBadRequest("Choose an action.")
    machines = list(tag_views.selected(request.POST).order_by("hostname"))
    back = request.POST.get("next") or reverse("inventory:machine-list")
    if not back.startswith("/") or back.startswith("//"):
        back = reverse("inventory:machine-list")
    if not machines:
        messages.error(request, "No machines were selected.")
        return redirect(back)
    profile = None
    boot = request.POST.get("boot", "")
    if action == "install":
        profile = OSProfile.objects.filter(name=request.POST.get("profile", "")).first()
        if profile is None:
            messages.error(request, "Choose the profile to install.")
            return redirect(back)
        if boot not in BOOTS:
            messages.error(request, f"Boot: choose one of {', '.join(BOOTS.values())}.")
            return redirect(back)
    lifecycle_request = None
    if action in LIFECYCLE_BULK:
        try:
            lifecycle_request = _bulk_lifecycle_request(request, action)
        except lifecycle_actions.Invalid as exc:
            messages.error(request, str(exc))
            return redirect(back)
    expected = expected_confirmation(action, machines)
    typed = request.POST.get("confirm", "").strip()
    if not request.POST.get("confirmed") or (expected and typed != expected):
        status = 200 if not request.POST.get("confirmed") else 400
        return render(
            request,
            "inventory/machine_action_confirm.html",
            {
                "action": action,
                "action_label": ACTIONS[action],
                "machines": machines,
                "profile": profile,
                "boot": boot,
                "boot_label": BOOTS.get(boot, ""),
                "workflow": lifecycle_request.workflow if lifecycle_request else "",
                "cpu_burn_s": lifecycle_request.cpu_burn_s if lifecycle_request else None,
                "nic_speed_mbps": lifecycle_request.nic_speed_mbps if lifecycle_request else None,
                "expected": expected,
                "wrong": bool(request.POST.get("confirmed")),
                "next": back,
            },
            status=status,
        )
    actor = Actor.for_user(request.user)
    if lifecycle_request is not None:
        _request_operation(request, machines, lifecycle_request, actor)
        return redirect(back)
    return redirect(_perform(request, action, machines, actor) or back)


def _bulk_lifecycle_request(request, action: str) -> lifecycle_actions.Request:
    """The lifecycle operation a bulk action asks for, with what the form sent for it (a test's workflow and
    CPU burn, a deploy's profile and boot)."""
    name = LIFECYCLE_BULK[action]
    post = request.POST
    return lifecycle_actions.parse(
        name,
        profile=post.get("profile", "") if name == "deploy" else "",
        boot=post.get("boot", "") if name == "deploy" else "",
        workflow=post.get("workflow", "") if name == "test" else "",
        cpu_burn_s=post.get("cpu_burn_s", "") if name == "test" else None,
        nic_speed_mbps=post.get("nic_speed_mbps", "") if name == "test" else None,
    )


def _request_operation(request, machines: list, req: lifecycle_actions.Request, actor: Actor) -> None:
    try:
        batch = lifecycle_actions.request_operation(machines, req, actor, name=request.POST.get("name", "")[:100])
    except lifecycle_actions.Refused as exc:
        for problem in exc.problems:
            messages.error(request, problem)
        return
    if req.profile:
        messages.success(request, f"{len(machines)} install(s) of {req.profile.name} requested as {batch}.")
    else:
        messages.success(request, f"{req.spec.label}: requested for {len(machines)} machine(s) as {batch}.")


def _perform(request, action: str, machines: list, actor: Actor) -> str | None:
    """Do the bulk action; returns where to go next when not back to the list."""
    if action == "host_ping":
        try:
            hostping.enqueue_host_pings(machines, actor)
        except hostping.HostPingRefused as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Ping of {len(machines)} host(s) queued on their site workers.")
        return None
    if action == "credentials":
        try:
            check = credentials_check.start(machines, actor)
        except credentials_check.CheckRefused as exc:
            messages.error(request, str(exc))
            return None
        messages.success(request, f"Testing the BMC credentials of {len(machines)} machine(s): one login each.")
        return reverse("inventory:credential-check", args=[check.pk])
    if action == "cancel":
        active = {i.machine_id: i.pk for i in Install.objects.filter(machine__in=machines, state__in=ACTIVE_STATES)}
        done = 0
        for machine in machines:
            if machine.pk not in active:
                messages.warning(request, f"{machine.hostname} has no install in progress.")
                continue
            try:
                cancel(active[machine.pk], actor=actor, why=request.POST.get("why", "")[:500])
                done += 1
            except EngineError as exc:
                messages.warning(request, f"{machine.hostname}: {exc}")
        if done:
            messages.success(request, f"Cancelled {done} install(s).")
        return None
    try:
        power.enqueue_actions(machines, action, actor)
    except power.PowerActionRefused as exc:
        messages.error(request, str(exc))
        return None
    messages.success(request, f"{ACTIONS[action]}: queued for {len(machines)} machine(s) on their site workers.")


def _machine_or_404(hostname: str):
    """By hostname; a number that is no hostname is taken as the machine's id (links from scripts and
    the admin carry ids)."""
    machines = Machine.objects.select_related("rack__site", "bmc").prefetch_related("nics")
    machine = machines.filter(hostname=hostname).first()
    if machine is None and (pk := int_param(hostname)) is not None:
        machine = machines.filter(pk=pk).first()
    if machine is None:
        raise Http404(f"No machine {hostname}.")
    return machine


@require_GET
@require_role(Role.VIEWER)
def machine_detail(request, hostname: str):
    machine = _machine_or_404(hostname)
    try:
        bmc = machine.bmc
    except BMC.DoesNotExist:
        bmc = None
    installs = list(
        Install.objects.filter(machine=machine)
        .select_related("profile", "batch")
        .only(
            "pk",
            "state",
            "progress",
            "current_step",
            "created_at",
            "started_at",
            "finished_at",
            "failure_reason",
            "failure_message",
            "requested_by_label",
            "profile__name",
            "batch__name",
            "machine_id",
        )
        .order_by("-id")[:50]
    )
    machine_health = MachineHealth.objects.filter(machine=machine).first()
    sensors = health.sensors_of(machine_health)
    can_act = has_role(request.user, Role.TECHNICIAN)
    active_install = next((i for i in installs if i.is_active), None)
    lifecycle_context = _lifecycle_context(machine, can_act, active_install is not None)
    return render(
        request,
        "inventory/machine_detail.html",
        {
            **lifecycle_context,
            "machine": machine,
            "bmc": bmc,
            "health": machine_health,
            "sensors": health.sensor_rows(sensors),
            # A powered-off server reads only its standby sensors: judge by what it could read.
            "sensors_health": worst(s.health for s in sensors if s.health != Health.UNKNOWN)
            if any(s.health != Health.UNKNOWN for s in sensors)
            else Health.UNKNOWN,
            "events": health.events_of(machine_health, EVENTS_SHOWN),
            "has_sensors": health.can(machine, Capability.SENSORS),
            "has_event_log": health.can(machine, Capability.EVENT_LOG),
            "nics": list(machine.nics.all()),
            "installs": installs,
            "active_install": active_install,
            "profiles": list(OSProfile.objects.order_by("name").only("name", "method", "description")),
            "boots": BOOTS,
            "previews": [(p, previews_for(p.method)) for p in OSProfile.objects.order_by("name").only("name", "method")]
            if has_role(request.user, Role.TECHNICIAN)
            else [],
            "can_act": can_act,
            "is_admin": has_role(request.user, Role.ADMIN),
            "console": machine_panel(machine, bmc, request.user),
            "terminal": terminal_panel(machine, request.user),
            # Only what the machine's driver declares, and deploy only where the lifecycle allows it (the
            # lifecycle panel offers the other operations); the rest would be refused anyway.
            "actions": {
                key: label
                for key, label in ACTIONS.items()
                if (key not in power.ACTION_CAPABILITY or power.can(machine, key))
                and (key not in LIFECYCLE_BULK or (key == "install" and lifecycle_context["deploy_allowed"]))
            },
            "driver": registry.drivers().get(bmc.driver) if bmc else None,
            "outlets": list(machine.pdu_outlets.select_related("pdu").order_by("pdu__name", "outlet")),
            "capabilities": [
                (capability, capability in power.capabilities_of(machine)) for capability in registry.Capability
            ],
            "confirm_typed": sorted(CONFIRM_TYPED),
            "protected_refuses": sorted(REFUSED_WHEN_PROTECTED),
            **tag_views.detail_context(machine, request.user),
        },
    )


def _lifecycle_context(machine: Machine, can_act: bool, has_active_install: bool) -> dict:
    """The lifecycle panel: where the machine is, what the table lets a technician do from there, and its
    hardware as the last commissioning found it."""
    allowed = lifecycle_actions.offered(machine, has_active_install)
    latest = MachineFacts.objects.filter(machine=machine).order_by("-version").first()
    return {
        "lifecycle_operations": [a for a in allowed if a.operation and a.name != "deploy"] if can_act else [],
        "lifecycle_marks": [a for a in allowed if not a.operation] if can_act else [],
        "deploy_allowed": any(a.name == "deploy" for a in allowed),
        "stale": lifecycle.stale(machine, has_active_install),
        "test_workflows": lifecycle_actions.hardware_test_workflows()
        if can_act and any(a.name == "test" for a in allowed)
        else [],
        "cpu_burn_max_s": lifecycle_actions.CPU_BURN_MAX_S,
        "hardware_summary": hardware.summary_line(machine),
        "latest_facts": latest,
        # An old machine's facts came with an install (Machine.facts) before commissioning kept versions.
        "facts": hardware.tables(latest.facts if latest else machine.facts),
    }


@require_POST
@require_role(Role.TECHNICIAN)
def machine_protect(request, hostname: str):
    """Protecting is for any technician who sees a production machine; unprotecting (which lets it
    be wiped) is the admin's, with a reason that goes into the audit log."""
    machine = _machine_or_404(hostname)
    protect = request.POST.get("protected") == "1"
    if not protect and not has_role(request.user, Role.ADMIN):
        return HttpResponse("Unprotecting a machine needs the admin role.", status=403)
    try:
        services.set_protected(
            machine.pk, protect, actor=Actor.for_user(request.user), reason=request.POST.get("reason", "")[:500]
        )
    except ValidationError as exc:
        for problem in exc.messages:
            messages.error(request, problem)
    else:
        messages.success(request, f"{machine.hostname} is {'protected' if protect else 'no longer protected'}.")
    return redirect("inventory:machine-detail", hostname=machine.hostname)


@require_POST
@require_role(Role.TECHNICIAN)
def machine_ping(request, hostname: str):
    machine = _machine_or_404(hostname)
    try:
        power.enqueue_actions([machine], "ping", Actor.for_user(request.user))
    except power.PowerActionRefused as exc:
        messages.error(request, str(exc))
    else:
        path = "BMC" if getattr(machine, "bmc", None) is not None else "PDU"
        messages.success(request, f"Ping of {machine.hostname}'s {path} queued; reload in a moment for the result.")
    return redirect("inventory:machine-detail", hostname=machine.hostname)


@require_POST
@require_role(Role.TECHNICIAN)
def machine_host_ping(request, hostname: str):
    machine = _machine_or_404(hostname)
    try:
        hostping.enqueue_host_pings([machine], Actor.for_user(request.user))
    except hostping.HostPingRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Ping of {machine.hostname}'s host queued; reload in a moment for the result.")
    return redirect("inventory:machine-detail", hostname=machine.hostname)


@require_GET
@require_role(Role.VIEWER)
def credential_check(request, check_id: int):
    """A credential test's report: one row per machine, filled in as the site workers finish."""
    check = get_object_or_404(CredentialCheck, pk=check_id)
    rows = credentials_check.report(check)
    counts = {r: sum(1 for row in rows if row.result == r) for r in ("ok", "rejected", "unreachable", "skipped")}
    return render(
        request,
        "inventory/credential_check.html",
        {"check": check, "rows": rows, "counts": counts, "pending": sum(1 for row in rows if not row.result)},
    )


@require_POST
@require_role(Role.TECHNICIAN)
def machine_health_refresh(request, hostname: str):
    """Read sensors and the event log now, on the site's worker; the page shows the result when it lands."""
    machine = _machine_or_404(hostname)
    try:
        health.enqueue_refresh(machine)
    except (power.PowerActionRefused, BmcError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Reading {machine.hostname}'s sensors and event log; reload in a moment.")
    return redirect("inventory:machine-detail", hostname=machine.hostname)


@require_POST
@require_role(Role.TECHNICIAN)
def machine_sel_clear(request, hostname: str):
    """Clear the BMC's system event log (audited), on the site's worker. The form asks for the hostname."""
    machine = _machine_or_404(hostname)
    if request.POST.get("confirm", "").strip() != machine.hostname:
        messages.error(request, f"Type {machine.hostname} to confirm clearing its event log.")
        return redirect("inventory:machine-detail", hostname=machine.hostname)
    try:
        health.enqueue_clear(machine, Actor.for_user(request.user))
    except (power.PowerActionRefused, BmcError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Clearing {machine.hostname}'s event log on its site worker; reload in a moment.")
    return redirect("inventory:machine-detail", hostname=machine.hostname)


@require_GET
@require_role(Role.TECHNICIAN)
def machine_preview(request, hostname: str, profile: str, what: str):
    """One file as this machine would receive it from ``profile``, with a placeholder token. Technicians
    only: answer files carry the profile's root password hash, which viewers do not get to crack."""

    if what not in PREVIEW_FILES:
        raise Http404(what)
    machine = _machine_or_404(hostname)
    profile_row = get_object_or_404(OSProfile, name=profile)
    try:
        plan = plan_for(machine, profile_row, for_install=False)
        text = preview(plan, what, hostname=machine.hostname, facts=machine.facts or {})
    except PlanError as exc:
        text, status = "Cannot plan an install:\n" + "\n".join(exc.messages) + "\n", 409
    except KeyError:
        text, status = f"{a(profile_row.method, capital=True)} install does not use {what}.\n", 404
    except TemplateError as exc:
        text, status = f"The profile's template does not render: {exc}\n", 409
    else:
        status = 200
    return HttpResponse(text, content_type="text/plain; charset=utf-8", status=status)


# --- racks (drawn by console/racks.py) ------------------------------------------------------

RACKS_PER_PAGE = 12


@require_GET
@require_role(Role.VIEWER)
def rack_list(request):
    sites = list(Site.objects.order_by("slug"))
    slug = request.GET.get("site") or (sites[0].slug if sites else "")
    racks = Rack.objects.filter(site__slug=slug).select_related("site").order_by("name")
    page = Paginator(racks, RACKS_PER_PAGE).get_page(request.GET.get("page"))
    drawings = draw_racks(page)
    template = "inventory/_rack_grid.html" if request.GET.get("partial") else "inventory/rack_list.html"
    return render(
        request,
        template,
        {
            "sites": sites,
            "site": slug,
            "page": page,
            "drawings": drawings,
            "g": GEOMETRY,
        },
    )


@require_GET
@require_role(Role.VIEWER)
def rack_detail(request, rack_id: int):
    rack = get_object_or_404(Rack.objects.select_related("site"), pk=rack_id)
    template = "inventory/_rack_grid.html" if request.GET.get("partial") else "inventory/rack_detail.html"
    return render(
        request,
        template,
        {
            "rack": rack,
            "drawings": draw_racks([rack]),
            "g": GEOMETRY,
        },
    )
