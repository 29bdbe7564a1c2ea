"""The REST API for automation, v1 (/api/v1/; the OpenAPI document is /api/v1/openapi.json).

People's scripts use it with ``Authorization: Token <key>`` (a per-user token, see accounts/api_tokens.py)
or from a logged-in browser session (writes then need the CSRF token, as the pages do). Every
endpoint checks the same role as the matching page, and every write goes through the same service
function as the page, which audits it. Responses list their fields: the install plan and token
are never among them.

Every refusal is a ``Problem`` (RFC 9457 problem details, application/problem+json; core/problems.py):
``detail`` (a sentence), ``field`` (the parameter at fault, ``body`` for the body as a whole), ``errors``
(each problem with its location) and ``problems`` (the reasons a 409 lists). Invalid input is a 400, a
body not sent as application/json a 415, and both come before any write (core/edge.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import wraps
from typing import Annotated, Literal

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Schema, Status
from ninja.errors import HttpError
from ninja.security import APIKeyHeader, SessionAuth
from pydantic import StrictBool, StrictInt

from access.rest import router as ssh_router
from accounts.api_tokens import user_for_key
from accounts.roles import Role, has_role
from audit.service import Actor
from console.filters import MachineQuery, machine_queryset
from core import edge, problems
from core.edge import BIGINT_MAX, INT_MAX, DbCount, DbId, Page, Text
from core.paging import PageParams, page_of, page_schema
from core.problems import Problem
from installs import batches as batch_service
from installs import engine, library, workflow_schema
from installs import workflow as wf
from installs.models import ACTIVE_STATES, Batch, BatchState, Event, Install, Script, Workflow
from inventory import credentials_check, health, hostping, power
from inventory.models import CredentialCheck, Machine, MachineHealth, OSProfile
from provisioner.bmc import BmcError, registry

from .hardware import summary as hardware_summary
from .queries import installs_for_pages
from .rest_discovery import router as discovery_router
from .rest_import import router as import_router
from .rest_inventory import router as inventory_router
from .rest_lifecycle import HardwareFilters, HardwareOut, filter_refusal
from .rest_lifecycle import offered as lifecycle_offered
from .rest_lifecycle import router as lifecycle_router
from .rest_machine_edit import router as machine_edit_router
from .rest_serial import router as serial_router


class ApiTokenAuth(APIKeyHeader):
    """Authorization: Token <key>."""

    param_name = "Authorization"

    def authenticate(self, request, key):
        scheme, _, value = (key or "").partition(" ")
        if scheme.lower() != "token" or not value:
            return None
        user = user_for_key(value.strip())
        if user is not None:
            request.user = user  # the audit trail and role checks read request.user
        return user


def _viewer_document(view):
    """The OpenAPI document, for a viewer's API token (scripts) or session (people, sent to log in first)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        user = ApiTokenAuth()(request) or (request.user if request.user.is_authenticated else None)
        if user is None and "Authorization" not in request.headers:
            return redirect_to_login(request.get_full_path())
        if user is None:
            return problems.response(401, "Unauthorized")
        if not has_role(user, Role.VIEWER):
            return problems.response(403, f"This needs the {Role.VIEWER.label} role.")
        return view(request, *args, **kwargs)

    return wrapped


class RestApi(edge.ProblemApi):
    refusals = {
        400: "Invalid input, named in field; nothing was written.",
        401: "No valid API token or session.",
        403: "The token's user lacks the role this needs.",
        415: "The body was not sent as application/json; nothing was written.",
    }

    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        workflow_schema.add_to_openapi(schema)  # what POST workflows takes as text, for editors and scripts
        return schema


api = RestApi(
    title="provisioner API",
    version="1",
    description="Machines, installs, batches, and the workflow and script library, for automation. Same roles "
    "as the web pages; the library is written by admins. "
    "Every refusal is a Problem (RFC 9457 problem details, application/problem+json); invalid input is a 400 "
    "that names the field, before any write. A workflow document is YAML text whose structure is the "
    "WorkflowDocument schema.",
    urls_namespace="api-v1",
    auth=[ApiTokenAuth(), SessionAuth(csrf=True)],
    docs_url=None,  # the interactive page loads from a CDN the datacentre network cannot reach
    docs_decorator=_viewer_document,
)


def _need(request, role: Role):
    if not has_role(request.auth, role):
        raise HttpError(403, f"This needs the {role.label} role.")


def _actor(request) -> Actor:
    return Actor.for_user(request.auth)


# --- schemas ----------------------------------------------------------------------------------


class NicOut(Schema):
    name: str
    mac: str
    is_pxe: bool
    ip: str | None = None
    prefix_len: int | None = None
    gateway: str | None = None
    vlan: int | None = None


class BmcOut(Schema):
    driver: str
    address: str
    port: int
    reachable: bool | None = None
    latency_ms: float | None = None
    checked_at: datetime | None = None
    last_error: str = ""
    credentials: str = Field("", description="Whose credentials it logs in with: machine, site, or a mix.")
    credentials_result: str = Field("", description="The last credential test: ok, rejected, unreachable, skipped.")
    credentials_checked_at: datetime | None = None


class HostOut(Schema):
    address: str | None = Field(None, description="The primary NIC's address, which is pinged.")
    reachable: bool | None = Field(None, description="The last ping's answer; null: never pinged or no address.")
    latency_ms: float | None = None
    checked_at: datetime | None = None
    last_error: str = ""


class PduOutletOut(Schema):
    pdu: str = Field(description="The PDU's name.")
    outlet: int
    address: str
    port: int
    profile: str = Field(description="The vendor profile (which MIB switches the outlet).")
    snmp_version: str


class MachineOut(Schema):
    id: int
    hostname: str
    site: str | None = None
    rack: str | None = None
    position_u: int | None = None
    height_u: int
    serial: str
    vendor: str
    model: str
    status: str = Field(description="Where it is in its lifecycle (README, Machine lifecycle).")
    status_reason: str = Field("", description="Why it is broken, failed or in maintenance.")
    status_changed_at: datetime | None = None
    protected: bool
    power_state: str
    power_state_at: datetime | None = None
    bmc_reachable: bool | None = None
    host_reachable: bool | None = None
    pxe_mac: str | None = None
    last_install_id: int | None = None
    last_install_state: str | None = None
    last_profile: str | None = None
    hardware: HardwareOut


class MachineDetailOut(MachineOut):
    actions: list[str] = Field(
        default_factory=list, description="The lifecycle actions its status allows now (POST .../lifecycle)."
    )
    facts: dict
    nics: list[NicOut]
    bmc: BmcOut | None = None
    host: HostOut
    capabilities: list[str] = Field(
        default_factory=list, description="What the machine's out-of-band driver can do (see GET drivers)."
    )
    pdu_outlets: list[PduOutletOut] = Field(
        default_factory=list,
        description="PDU outlets feeding the machine: its power path without a BMC, the fallback when the BMC hangs.",
    )


class DriverOut(Schema):
    name: str
    label: str
    capabilities: list[str]
    default_port: int
    description: str
    origin: str = Field(description='"built-in", or the package that registered the driver.')


class PowerIn(Schema):
    action: Literal["status", "on", "off", "cycle", "pxe", "disk", "ping", "media", "eject"] = Field(
        description="status, on, off, cycle; pxe (boot from the network once), disk (boot from disk from now on); "
        "ping (the BMC); media (what the virtual CD holds), eject (empty it; drivers with virtual media)."
    )


class PowerQueuedOut(Schema):
    job: str = Field(description="The site worker's job id.")
    action: str
    machine: str


class SensorOut(Schema):
    name: str
    kind: str
    value: float | None = None
    unit: str
    health: str = Field(description="ok, warning, critical or unknown (no reading).")
    lower_critical: float | None = None
    lower_non_critical: float | None = None
    upper_non_critical: float | None = None
    upper_critical: float | None = None
    states: list[str]


class SensorsOut(Schema):
    read_at: datetime | None = Field(None, description="When the site's worker read them; null: never.")
    error: str = Field(description="Why the last read failed (the readings are then the previous ones).")
    sensors: list[SensorOut]


class LogEntryOut(Schema):
    id: str
    at: datetime | None = Field(None, description="null: the BMC logged it before its clock was set.")
    severity: str
    message: str
    sensor: str


class EventsOut(Schema):
    read_at: datetime | None = None
    error: str
    total: int = Field(description="Entries the BMC's log held when read; the newest 200 are kept.")
    events: list[LogEntryOut] = Field(description="Newest first.")


class QueuedOut(Schema):
    job: str = Field(description="The RQ job on the machine's site queue; the machine's health shows the result.")


MachinePage = page_schema(MachineOut, "MachinePage")


class InstallOut(Schema):
    id: int
    machine: str
    purpose: str = Field(description="deploy, commission, test or release.")
    workflow: str = Field(description="The workflow it runs.")
    profile: str
    batch: int | None = None
    requested_by: str
    state: str
    progress: int
    current_step: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    failure_reason: str
    failure_message: str
    cancelled_by: str


class StepOut(Schema):
    order: int
    label: str
    kind: str
    task: str
    state: str
    attempts: int
    progress: int
    message: str
    started_at: datetime | None = None
    finished_at: datetime | None = None


class InstallDetailOut(InstallOut):
    steps: list[StepOut]


class EventOut(Schema):
    id: int
    install: int
    step: int | None = None
    at: datetime
    kind: str
    message: str
    data: dict


class BatchOut(Schema):
    id: int
    name: str
    state: str
    created_by: str
    created_at: datetime
    pause_reason: str
    max_per_site: int
    max_per_rack: int
    stagger_s: float
    installs: list[int]


class StartIn(Schema):
    machines: list[Text] = Field(..., min_length=1, max_length=5000, description="Hostnames.")
    profile: Text
    name: Text = Field("", max_length=100)
    max_per_site: DbCount | None = None
    max_per_rack: DbCount | None = None
    stagger_s: float | None = Field(None, ge=0, le=600)
    boot: Literal["", "network", "virtual-media"] = Field(
        "",
        description="Boot the machines from the network or from virtual media (an ISO the BMC attaches, for sites "
        "without DHCP or PXE) instead of as the profile's workflow says; a profile with a workflow of its own must "
        "already boot so.",
    )


class WhyIn(Schema):
    why: Text = Field("", max_length=500)


class MachineFilters(HardwareFilters, PageParams):
    q: Text = ""
    site: Text = ""
    rack: Text = ""
    status: Text = ""
    power: Text = ""
    vendor: Text = ""
    profile: Text = ""
    sort: Text = "hostname"


class InstallFilters(Schema):
    state: Text = ""
    machine: Text = ""
    batch: DbId | None = None
    page: Page = 1
    per_page: int = Field(100, ge=1, le=1000)


# --- rendering ------------------------------------------------------------------------------


def _machine(m: Machine) -> dict:
    return {
        "id": m.pk,
        "hostname": m.hostname,
        "site": m.rack.site.slug if m.rack else None,
        "rack": m.rack.name if m.rack else None,
        "position_u": m.position_u,
        "height_u": m.height_u,
        "serial": m.serial,
        "vendor": m.vendor,
        "model": m.model,
        "status": m.status,
        "status_reason": m.status_reason,
        "status_changed_at": m.status_changed_at,
        "protected": m.protected,
        "power_state": m.power_state,
        "power_state_at": m.power_state_at,
        "bmc_reachable": getattr(getattr(m, "bmc", None), "reachable", None),
        "host_reachable": m.host_reachable,
        "pxe_mac": m.pxe_mac,
        "last_install_id": m.last_install_id,
        "last_install_state": m.last_install_state,
        "last_profile": m.last_profile,
        "hardware": hardware_summary(m),
    }


def _install(i: Install) -> dict:
    return {
        "id": i.pk,
        "machine": i.machine.hostname,
        "purpose": i.purpose,
        "workflow": i.workflow,
        "profile": i.profile.name,
        "batch": i.batch_id,
        "requested_by": i.requested_by_label,
        "state": i.state,
        "progress": i.progress,
        "current_step": i.current_step,
        "created_at": i.created_at,
        "started_at": i.started_at,
        "finished_at": i.finished_at,
        "deadline_at": i.deadline_at,
        "failure_reason": i.failure_reason,
        "failure_message": i.failure_message,
        "cancelled_by": i.cancelled_by_label,
    }


def _batch(b: Batch) -> dict:
    return {
        "id": b.pk,
        "name": str(b),
        "state": b.state,
        "created_by": b.created_by_label,
        "created_at": b.created_at,
        "pause_reason": b.pause_reason,
        "max_per_site": b.max_per_site,
        "max_per_rack": b.max_per_rack,
        "stagger_s": b.stagger_s,
        "installs": list(b.installs.order_by("pk").values_list("pk", flat=True)),
    }


# --- machines -------------------------------------------------------------------------------


@api.get("machines", response=MachinePage, tags=["machines"])
def list_machines(request, filters: Query[MachineFilters]):
    """Machines with the machine list's filters, search and sort (prefix the sort key with - to reverse)."""
    _need(request, Role.VIEWER)
    query = MachineQuery.from_params(filters.model_dump())
    if refused := filter_refusal(query):
        return refused
    return page_of(machine_queryset(query), filters, _machine)


@api.get("machines/{hostname}", response=MachineDetailOut, tags=["machines"])
def get_machine(request, hostname: Path[Text]):
    _need(request, Role.VIEWER)
    machine = get_object_or_404(
        machine_queryset(MachineQuery()).defer(None).prefetch_related("nics"), hostname=hostname
    )
    data = _machine(machine)
    data["actions"] = lifecycle_offered(machine, machine.last_install_state in ACTIVE_STATES)
    data["facts"] = machine.facts or {}
    data["nics"] = [
        {
            "name": n.name,
            "mac": n.mac,
            "is_pxe": n.is_pxe,
            "ip": n.ip,
            "prefix_len": n.prefix_len,
            "gateway": n.gateway,
            "vlan": n.vlan,
        }
        for n in machine.nics.all()
    ]
    bmc = getattr(machine, "bmc", None)  # the reverse one-to-one raises (an AttributeError) when absent
    data["bmc"] = (
        None
        if bmc is None
        else {
            "driver": bmc.driver,
            "address": bmc.address,
            "port": bmc.port,
            "reachable": bmc.reachable,
            "latency_ms": bmc.latency_ms,
            "checked_at": bmc.checked_at,
            "last_error": bmc.last_error,
            "credentials": _credential_source(bmc),
            "credentials_result": bmc.credentials_result,
            "credentials_checked_at": bmc.credentials_checked_at,
        }
    )
    data["host"] = {
        "address": machine.host_address,
        "reachable": machine.host_reachable,
        "latency_ms": machine.host_latency_ms,
        "checked_at": machine.host_checked_at,
        "last_error": machine.host_last_error,
    }
    data["capabilities"] = sorted(power.capabilities_of(machine))
    data["pdu_outlets"] = [
        {
            "pdu": o.pdu.name,
            "outlet": o.outlet,
            "address": o.pdu.address,
            "port": o.pdu.port,
            "profile": o.pdu.profile,
            "snmp_version": o.pdu.snmp_version,
        }
        for o in machine.pdu_outlets.select_related("pdu").order_by("pdu__name", "outlet")
    ]
    return data


def _credential_source(bmc) -> str:
    own_user, own_password = bool(bmc.username), bmc.has_password
    if own_user and own_password:
        return "machine"
    if not own_user and not own_password:
        return "site"
    return "machine user, site password" if own_user else "site user, machine password"


@api.post("machines/{hostname}/power", response={202: PowerQueuedOut, 409: Problem}, tags=["machines"])
def machine_power(request, hostname: Path[Text], body: PowerIn):
    """Queue a power or boot-device action on the machine's site worker (audited there). Refused (409) on a
    protected machine for off, cycle and pxe, and where the machine's driver cannot do it."""
    _need(request, Role.TECHNICIAN)
    machine = get_object_or_404(Machine.objects.select_related("rack__site", "bmc"), hostname=hostname)
    try:
        (job,) = power.enqueue_actions([machine], body.action, _actor(request))
    except power.PowerActionRefused as exc:
        raise _RefusedError([str(exc)]) from None
    return Status(202, {"job": job, "action": body.action, "machine": machine.hostname})


@api.get("drivers", response=list[DriverOut], tags=["machines"])
def list_drivers(request):
    """Every out-of-band driver installed here (built in and plug-ins) and what each can do."""
    _need(request, Role.VIEWER)
    return [
        {
            "name": d.name,
            "label": d.label,
            "capabilities": sorted(d.capabilities),
            "default_port": d.default_port,
            "description": d.description,
            "origin": d.origin,
        }
        for d in registry.drivers().values()
    ]


def _machine_health(hostname: str) -> tuple[Machine, MachineHealth | None]:
    machine = get_object_or_404(Machine.objects.select_related("bmc", "rack__site"), hostname=hostname)
    return machine, MachineHealth.objects.filter(machine=machine).first()


@api.get("machines/{hostname}/sensors", response=SensorsOut, tags=["machines"])
def machine_sensors(request, hostname: Path[Text]):
    """The sensors as the site's worker last read them (POST .../health/refresh reads them again)."""
    _need(request, Role.VIEWER)
    _, row = _machine_health(hostname)
    return {
        "read_at": row.sensors_read_at if row else None,
        "error": row.sensors_error if row else "",
        "sensors": [s.as_dict() for s in health.sensors_of(row)],
    }


@api.get("machines/{hostname}/events", response=EventsOut, tags=["machines"])
def machine_events(request, hostname: Path[Text]):
    """The system event log as the site's worker last read it, newest entry first."""
    _need(request, Role.VIEWER)
    _, row = _machine_health(hostname)
    return {
        "read_at": row.events_read_at if row else None,
        "error": row.events_error if row else "",
        "total": row.events_total if row else 0,
        "events": [e.as_dict() for e in health.events_of(row)],
    }


@api.post("machines/{hostname}/health/refresh", response={202: QueuedOut, 409: Problem}, tags=["machines"])
def refresh_machine_health(request, hostname: Path[Text]):
    """Read the machine's sensors and event log again, on its site's worker."""
    _need(request, Role.TECHNICIAN)
    machine, _ = _machine_health(hostname)
    try:
        return Status(202, {"job": health.enqueue_refresh(machine)})
    except (power.PowerActionRefused, BmcError) as exc:
        raise _RefusedError([str(exc)]) from None


@api.post("machines/{hostname}/events/clear", response={202: QueuedOut, 409: Problem}, tags=["machines"])
def clear_machine_events(request, hostname: Path[Text]):
    """Clear the BMC's system event log, on the machine's site worker; audited as machine.sel_clear."""
    _need(request, Role.TECHNICIAN)
    machine, _ = _machine_health(hostname)
    try:
        return Status(202, {"job": health.enqueue_clear(machine, _actor(request))})
    except (power.PowerActionRefused, BmcError) as exc:
        raise _RefusedError([str(exc)]) from None


# --- installs -------------------------------------------------------------------------------


@api.get("installs", response=list[InstallOut], tags=["installs"])
def list_installs(request, filters: Query[InstallFilters]):
    """Newest first. state=active gives every install not yet ended."""
    _need(request, Role.VIEWER)
    installs = installs_for_pages().order_by("-id")
    if filters.state == "active":
        installs = installs.filter(state__in=ACTIVE_STATES)
    elif filters.state:
        installs = installs.filter(state=filters.state)
    if filters.machine:
        installs = installs.filter(machine__hostname=filters.machine)
    if filters.batch:
        installs = installs.filter(batch_id=filters.batch)
    start = (filters.page - 1) * filters.per_page
    return [_install(i) for i in installs[start : start + filters.per_page]]


@api.get("installs/{install_id}", response=InstallDetailOut, tags=["installs"])
def get_install(request, install_id: Path[DbId]):
    _need(request, Role.VIEWER)
    install = get_object_or_404(installs_for_pages(), pk=install_id)
    data = _install(install)
    data["steps"] = [
        {
            "order": s.order,
            "label": s.label,
            "kind": s.kind,
            "task": s.task,
            "state": s.state,
            "attempts": s.attempts,
            "progress": s.progress,
            "message": s.message,
            "started_at": s.started_at,
            "finished_at": s.finished_at,
        }
        for s in install.steps.order_by("order").defer("params", "result")
    ]
    return data


@api.get("installs/{install_id}/events", response=list[EventOut], tags=["installs"])
def install_events(
    request,
    install_id: Path[DbId],
    after: int = Query(0, ge=0, le=BIGINT_MAX),
    limit: int = Query(500, ge=1, le=5000),
):
    """Events after the id ``after``, oldest first: poll with the last id you saw, as the browser does."""
    _need(request, Role.VIEWER)
    install = get_object_or_404(Install.objects.only("pk"), pk=install_id)
    events = Event.objects.filter(install=install, id__gt=after).order_by("id")[:limit]
    return [e.as_message() for e in events]


def _start(request, body: StartIn) -> Batch:
    _need(request, Role.TECHNICIAN)
    profile = OSProfile.objects.filter(name=body.profile).first()
    if profile is None:
        raise HttpError(404, f"No profile {body.profile!r}.")
    found = dict(Machine.objects.filter(hostname__in=body.machines).values_list("hostname", "pk"))
    missing = sorted(set(body.machines) - set(found))
    if missing:
        raise HttpError(404, f"No such machine(s): {', '.join(missing[:20])}.")
    try:
        return batch_service.request_installs(
            list(found.values()),
            profile,
            _actor(request),
            name=body.name,
            max_per_site=body.max_per_site,
            max_per_rack=body.max_per_rack,
            stagger_s=body.stagger_s,
            boot=body.boot,
        )
    except batch_service.InstallRefused as exc:
        raise _refused(exc) from None


class _RefusedError(HttpError):
    """A 409: the service function refused, for the reasons listed in ``problems``."""

    def __init__(self, problems: list[str]):
        super().__init__(409, "Refused: " + "; ".join(problems))
        self.problems = problems


def _refused(exc: batch_service.InstallRefused) -> _RefusedError:
    return _RefusedError(list(exc.args[0]))


@api.post("installs", response={201: list[InstallOut], 409: Problem}, tags=["installs"])
def start_installs(request, body: StartIn):
    """Install ``profile`` on the machines (one batch; all or none are accepted)."""
    batch = _start(request, body)
    return Status(201, [_install(i) for i in installs_for_pages().filter(batch=batch).order_by("pk")])


@api.post("installs/{install_id}/cancel", response={200: InstallOut, 409: Problem}, tags=["installs"])
def cancel_install(request, install_id: Path[DbId], body: WhyIn = None):
    _need(request, Role.TECHNICIAN)
    get_object_or_404(Install.objects.only("pk"), pk=install_id)
    try:
        engine.cancel(install_id, actor=_actor(request), why=body.why if body else "")
    except engine.EngineError as exc:
        raise _RefusedError([str(exc)]) from None
    return _install(installs_for_pages().get(pk=install_id))


@api.post("installs/{install_id}/retry", response={201: list[InstallOut], 409: Problem}, tags=["installs"])
def retry_install(request, install_id: Path[DbId]):
    _need(request, Role.TECHNICIAN)
    get_object_or_404(Install.objects.only("pk"), pk=install_id)
    try:
        batch = batch_service.retry(install_id, _actor(request))
    except batch_service.InstallRefused as exc:
        raise _refused(exc) from None
    return Status(201, [_install(i) for i in installs_for_pages().filter(batch=batch)])


# --- batches --------------------------------------------------------------------------------


@api.post("batches", response={201: BatchOut, 409: Problem}, tags=["batches"])
def start_batch(request, body: StartIn):
    """Like POST installs, answering with the batch: admitted under its caps, with a power-on stagger."""
    return Status(201, _batch(_start(request, body)))


@api.get("batches/{batch_id}", response=BatchOut, tags=["batches"])
def get_batch(request, batch_id: Path[DbId]):
    _need(request, Role.VIEWER)
    return _batch(get_object_or_404(Batch, pk=batch_id))


def _set_batch(request, batch_id: int, to: str, why: str) -> dict:
    _need(request, Role.TECHNICIAN)
    get_object_or_404(Batch.objects.only("pk"), pk=batch_id)
    try:
        batch_service.set_batch_state(batch_id, to, _actor(request), why)
    except batch_service.InstallRefused as exc:
        raise _refused(exc) from None
    return _batch(Batch.objects.get(pk=batch_id))


@api.post("batches/{batch_id}/pause", response={200: BatchOut, 409: Problem}, tags=["batches"])
def pause_batch(request, batch_id: Path[DbId], body: WhyIn = None):
    return _set_batch(request, batch_id, BatchState.PAUSED, body.why if body else "")


@api.post("batches/{batch_id}/resume", response={200: BatchOut, 409: Problem}, tags=["batches"])
def resume_batch(request, batch_id: Path[DbId], body: WhyIn = None):
    return _set_batch(request, batch_id, BatchState.RUNNING, body.why if body else "")


@api.post("batches/{batch_id}/cancel", response={200: BatchOut, 409: Problem}, tags=["batches"])
def cancel_batch(request, batch_id: Path[DbId], body: WhyIn = None):
    return _set_batch(request, batch_id, BatchState.CANCELLED, body.why if body else "")


# --- the workflow and script library ----------------------------------------------------------
# Read by viewers; written by admins, as in the admin site (a workflow decides what every install of the
# profiles naming it does to a machine, as the profile itself does). Every save goes through
# installs/library.py, which checks and audits it; a changed document or script is a new version.

LibraryName = Annotated[Text, Field(min_length=1, max_length=64)]
_LINE = re.compile(r"^line (\d+): (.*)$", re.S)


class WorkflowOut(Schema):
    name: str
    version: int
    description: str
    created_at: datetime
    created_by: str


class WorkflowDetailOut(WorkflowOut):
    document: str = Field(..., description="YAML; its structure is the WorkflowDocument schema.")
    versions: list[int]


class WorkflowIn(Schema):
    document: Text = Field(
        ..., min_length=1, max_length=wf.MAX_DOCUMENT, description="YAML text of a WorkflowDocument."
    )


class WorkflowSavedOut(Schema):
    name: str
    version: int
    new_version: bool = Field(..., description="False: the document was the latest version's, kept as it is.")


class WorkflowCheckOut(Schema):
    ok: bool
    name: str
    methods: list[str]
    stages: int
    tasks: int


class ScriptOut(Schema):
    name: str
    version: int
    description: str
    timeout_s: int
    safe_to_repeat: bool
    created_at: datetime
    created_by: str


class ScriptDetailOut(ScriptOut):
    body: str
    versions: list[int]


class ScriptIn(Schema):
    name: LibraryName
    body: Text = Field(..., min_length=1, max_length=wf.MAX_DOCUMENT)
    description: Text = Field("", max_length=255)
    timeout_s: StrictInt = Field(600, ge=1, le=wf.MAX_TIMEOUT_S)
    safe_to_repeat: StrictBool = False  # not 0 or "no": a script's safety is said, not guessed


class ScriptSavedOut(Schema):
    name: str
    version: int
    new_version: bool


class VersionQuery(Schema):
    version: int | None = Field(None, ge=1, le=INT_MAX, description="A version; the latest when left out.")


def _entry(row) -> dict:
    data = {
        "name": row.name,
        "version": row.version,
        "description": row.description,
        "created_at": row.created_at,
        "created_by": row.created_by_label,
    }
    if isinstance(row, Script):
        data.update(timeout_s=row.timeout_s, safe_to_repeat=row.safe_to_repeat)
    return data


def _latest_each(model):
    """The latest version of every name, without the (long) text."""
    text = "document" if model is Workflow else "body"
    return model.objects.order_by("name", "-version").distinct("name").defer(text)


def _version(model, name: str, version: int | None):
    rows = model.objects.filter(name=name)
    row = rows.filter(version=version).first() if version else rows.order_by("-version").first()
    if row is None:
        raise HttpError(404, f"No {model._meta.verbose_name} {name!r}" + (f" version {version}." if version else "."))
    versions = list(rows.order_by("version").values_list("version", flat=True))
    return row, versions


def _invalid_document(exc: wf.WorkflowInvalid):
    """A 400 naming each problem of the document with its line."""
    errors = []
    for message in exc.messages:
        match = _LINE.match(message)
        line, reason = (int(match.group(1)), match.group(2)) if match else (None, message)
        errors.append({"loc": ["body", "body", "document"], "msg": reason, "type": "workflow_invalid", "line": line})
    detail = f"document: {'; '.join(exc.messages)}"
    return problems.response(400, detail, field="document", errors=errors)


def _invalid_fields(exc: ValidationError):
    errors = [
        {"loc": ["body", "body", field], "msg": message, "type": "value_error"}
        for field, messages in exc.message_dict.items()
        for message in messages
    ]
    field = problems.field_of(errors[0]["loc"]) if errors else "body"
    return problems.response(400, f"{field}: {errors[0]['msg'] if errors else exc}", field=field, errors=errors)


def _saved_at_once() -> HttpError:
    return _RefusedError(["Another save of this name was made at the same moment; send it again."])


@api.get("workflows", response=list[WorkflowOut], tags=["library"])
def list_workflows(request):
    """The latest version of each workflow of the library, by name (the stock workflows are not rows)."""
    _need(request, Role.VIEWER)
    return [_entry(w) for w in _latest_each(Workflow)]


@api.post(
    "workflows/check", response={200: WorkflowCheckOut, 400: Problem}, tags=["library"], operation_id="check_workflow"
)
def check_workflow(request, body: WorkflowIn):
    """Check a document as saving it would, against the library as it is now; nothing is written."""
    _need(request, Role.VIEWER)
    try:
        checked = library.check(body.document)
    except wf.WorkflowInvalid as exc:
        return _invalid_document(exc)
    return {
        "ok": True,
        "name": checked.name,
        "methods": list(checked.methods),
        "stages": len(checked.stages),
        "tasks": sum(1 for _ in checked.tasks()),
    }


@api.get("workflows/{name}", response=WorkflowDetailOut, tags=["library"])
def get_workflow(request, name: Path[LibraryName], query: Query[VersionQuery]):
    _need(request, Role.VIEWER)
    row, versions = _version(Workflow, name, query.version)
    return {**_entry(row), "document": row.document, "versions": versions}


@api.post("workflows", response={200: WorkflowSavedOut, 201: WorkflowSavedOut, 400: Problem, 409: Problem},
          tags=["library"])  # fmt: skip
def save_workflow(request, body: WorkflowIn):
    """Check and save a document under the name it gives: 201 with the new version, or 200 when it is the
    latest version's document already. A refused document is a 400 whose ``errors`` give each problem's line."""
    _need(request, Role.ADMIN)
    try:
        row, new = library.save_workflow(body.document, _actor(request))
    except wf.WorkflowInvalid as exc:
        return _invalid_document(exc)
    except IntegrityError:
        raise _saved_at_once() from None
    return Status(201 if new else 200, {"name": row.name, "version": row.version, "new_version": new})


@api.get("scripts", response=list[ScriptOut], tags=["library"])
def list_scripts(request):
    """The latest version of each script, by name; bodies are in each script's own answer."""
    _need(request, Role.VIEWER)
    return [_entry(s) for s in _latest_each(Script)]


@api.get("scripts/{name}", response=ScriptDetailOut, tags=["library"])
def get_script(request, name: Path[LibraryName], query: Query[VersionQuery]):
    _need(request, Role.VIEWER)
    row, versions = _version(Script, name, query.version)
    return {**_entry(row), "body": row.body, "versions": versions}


@api.post("scripts", response={200: ScriptSavedOut, 201: ScriptSavedOut, 400: Problem, 409: Problem},
          tags=["library"])  # fmt: skip
def save_script(request, body: ScriptIn):
    """Save a script: 201 with the new version, or 200 when nothing changed from the latest version."""
    _need(request, Role.ADMIN)
    try:
        row, new = library.save_script(
            body.name,
            body.body,
            _actor(request),
            description=body.description,
            timeout_s=body.timeout_s,
            safe_to_repeat=body.safe_to_repeat,
        )
    except ValidationError as exc:
        return _invalid_fields(exc)
    except IntegrityError:
        raise _saved_at_once() from None
    return Status(201 if new else 200, {"name": row.name, "version": row.version, "new_version": new})


# --- reachability and credentials: host ping and the one-attempt credential test --------------------------


class MachinesIn(Schema):
    machines: list[Text] = Field(..., min_length=1, max_length=credentials_check.MAX_MACHINES, description="Hostnames.")


class QueuedOut(Schema):
    jobs: list[str]


class CredentialRowOut(Schema):
    machine: str
    result: str = Field(..., description="ok, rejected, unreachable or skipped; empty while pending.")
    source: str
    username: str
    detail: str
    checked_at: datetime | None = None


class CredentialTestOut(Schema):
    id: int
    requested_by: str
    created_at: datetime
    finished_at: datetime | None = None
    results: list[CredentialRowOut]


def _named_machines(hostnames: list[str]) -> list[Machine]:
    found = {m.hostname: m for m in Machine.objects.select_related("rack__site").filter(hostname__in=hostnames)}
    missing = sorted(set(hostnames) - set(found))
    if missing:
        raise HttpError(404, f"No such machine(s): {', '.join(missing[:20])}.")
    return [found[h] for h in dict.fromkeys(hostnames)]


def _credential_test(check: CredentialCheck) -> dict:
    return {
        "id": check.pk,
        "requested_by": check.requested_by_label,
        "created_at": check.created_at,
        "finished_at": check.finished_at,
        "results": [
            {
                "machine": r.machine.hostname,
                "result": r.result,
                "source": r.source,
                "username": r.username,
                "detail": r.detail,
                "checked_at": r.checked_at,
            }
            for r in credentials_check.report(check)
        ],
    }


@api.post("host-pings", response={202: QueuedOut, 409: Problem}, tags=["machines"])
def ping_hosts(request, body: MachinesIn):
    """Ping these machines' hosts now from their sites' workers; the results land in each machine's ``host``."""
    _need(request, Role.TECHNICIAN)
    try:
        jobs = hostping.enqueue_host_pings(_named_machines(body.machines), _actor(request))
    except hostping.HostPingRefused as exc:
        raise _RefusedError([str(exc)]) from None
    return Status(202, {"jobs": jobs})


@api.post("credential-tests", response={201: CredentialTestOut, 409: Problem}, tags=["machines"])
def start_credential_test(request, body: MachinesIn):
    """Test the BMC credentials of these machines: one login attempt per BMC, never repeated (no lockout),
    run by their sites' workers. Poll GET credential-tests/{id} until ``finished_at`` is set."""
    _need(request, Role.TECHNICIAN)
    try:
        check = credentials_check.start(_named_machines(body.machines), _actor(request))
    except credentials_check.CheckRefused as exc:
        raise _RefusedError([str(exc)]) from None
    return Status(201, _credential_test(check))


@api.get("credential-tests/{check_id}", response=CredentialTestOut, tags=["machines"])
def get_credential_test(request, check_id: Path[DbId]):
    _need(request, Role.VIEWER)
    return _credential_test(get_object_or_404(CredentialCheck, pk=check_id))


api.add_router("", serial_router)
api.add_router("", lifecycle_router)
api.add_router("", discovery_router)
api.add_router("", ssh_router)
api.add_router("", import_router)
api.add_router("", inventory_router)
api.add_router("", machine_edit_router)
edge.refuse_undeclared_query(api)
