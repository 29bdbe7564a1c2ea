"""REST for machines (added to the v1 API by console/rest.py): the machine list with the page's filters, one machine
whole, power and boot actions, its sensors and event log, and the out-of-band drivers installed here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Router, Schema, Status

from accounts.roles import Role
from console.filters import MAX_TAG_FILTERS, MachineQuery, machine_queryset
from core.edge import Text
from core.paging import PageParams, page_of, page_schema
from core.problems import Problem
from installs.models import ACTIVE_STATES
from inventory import health, power
from inventory.models import Machine, MachineHealth
from provisioner.bmc import BmcError, registry

from .hardware import summary as hardware_summary
from .rest_base import RefusedError, actor, filtered_page, need
from .rest_lifecycle import HardwareFilters, HardwareOut
from .rest_lifecycle import offered as lifecycle_offered

router = Router(tags=["machines"])
TagText = Annotated[Text, Field(max_length=50)]


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
    depth: str
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
    tags: list[str] = Field(default_factory=list, description="Its tags' names (GET tags describes them).")


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
DriverPage = page_schema(DriverOut, "DriverPage")


class MachineFilters(HardwareFilters, PageParams):
    q: Text = ""
    site: Text = ""
    rack: Text = ""
    status: Text = ""
    power: Text = ""
    vendor: Text = ""
    profile: Text = ""
    # One tag, or a list: a query string's tag=gpu is both, and the schema says so.
    tag: Annotated[list[TagText], Field(max_length=MAX_TAG_FILTERS)] | TagText = Field(
        default_factory=list, description="Has this tag; given several times, all of them (tag=gpu&tag=fast)."
    )
    sort: Text = "hostname"


def _machine(m: Machine) -> dict:
    return {
        "id": m.pk,
        "hostname": m.hostname,
        "site": m.rack.site.slug if m.rack else None,
        "rack": m.rack.name if m.rack else None,
        "position_u": m.position_u,
        "height_u": m.height_u,
        "depth": m.depth,
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
        "tags": [t.name for t in m.tags.all()],
    }


@router.get("machines", response=MachinePage)
def list_machines(request, filters: Query[MachineFilters]):
    """Machines with the machine list's filters, search and sort (prefix the sort key with - to reverse)."""
    return filtered_page(request, filters, MachineQuery, machine_queryset, _machine)


@router.get("machines/{hostname}", response=MachineDetailOut)
def get_machine(request, hostname: Path[Text]):
    need(request, Role.VIEWER)
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


@router.post("machines/{hostname}/power", response={202: PowerQueuedOut, 409: Problem})
def machine_power(request, hostname: Path[Text], body: PowerIn):
    """Queue a power or boot-device action on the machine's site worker (audited there). Refused (409) on a
    protected machine for off, cycle and pxe, and where the machine's driver cannot do it."""
    need(request, Role.TECHNICIAN)
    machine = get_object_or_404(Machine.objects.select_related("rack__site", "bmc"), hostname=hostname)
    try:
        (job,) = power.enqueue_actions([machine], body.action, actor(request))
    except power.PowerActionRefused as exc:
        raise RefusedError([str(exc)]) from None
    return Status(202, {"job": job, "action": body.action, "machine": machine.hostname})


@router.get("drivers", response=DriverPage)
def list_drivers(request, params: Query[PageParams]):
    """Every out-of-band driver installed here (built in and plug-ins) and what each can do, by name."""
    need(request, Role.VIEWER)
    drivers = sorted(registry.drivers().values(), key=lambda d: d.name)
    return page_of(drivers, params, _driver)


def _driver(d) -> dict:
    return {
        "name": d.name,
        "label": d.label,
        "capabilities": sorted(d.capabilities),
        "default_port": d.default_port,
        "description": d.description,
        "origin": d.origin,
    }


def _machine_health(hostname: str) -> tuple[Machine, MachineHealth | None]:
    machine = get_object_or_404(Machine.objects.select_related("bmc", "rack__site"), hostname=hostname)
    return machine, MachineHealth.objects.filter(machine=machine).first()


@router.get("machines/{hostname}/sensors", response=SensorsOut)
def machine_sensors(request, hostname: Path[Text]):
    """The sensors as the site's worker last read them (POST .../health/refresh reads them again)."""
    need(request, Role.VIEWER)
    _, row = _machine_health(hostname)
    return {
        "read_at": row.sensors_read_at if row else None,
        "error": row.sensors_error if row else "",
        "sensors": [s.as_dict() for s in health.sensors_of(row)],
    }


@router.get("machines/{hostname}/events", response=EventsOut)
def machine_events(request, hostname: Path[Text]):
    """The system event log as the site's worker last read it, newest entry first."""
    need(request, Role.VIEWER)
    _, row = _machine_health(hostname)
    return {
        "read_at": row.events_read_at if row else None,
        "error": row.events_error if row else "",
        "total": row.events_total if row else 0,
        "events": [e.as_dict() for e in health.events_of(row)],
    }


@router.post("machines/{hostname}/health/refresh", response={202: QueuedOut, 409: Problem})
def refresh_machine_health(request, hostname: Path[Text]):
    """Read the machine's sensors and event log again, on its site's worker."""
    need(request, Role.TECHNICIAN)
    machine, _ = _machine_health(hostname)
    try:
        return Status(202, {"job": health.enqueue_refresh(machine)})
    except (power.PowerActionRefused, BmcError) as exc:
        raise RefusedError([str(exc)]) from None


@router.post("machines/{hostname}/events/clear", response={202: QueuedOut, 409: Problem})
def clear_machine_events(request, hostname: Path[Text]):
    """Clear the BMC's system event log, on the machine's site worker; audited as machine.sel_clear."""
    need(request, Role.TECHNICIAN)
    machine, _ = _machine_health(hostname)
    try:
        return Status(202, {"job": health.enqueue_clear(machine, actor(request))})
    except (power.PowerActionRefused, BmcError) as exc:
        raise RefusedError([str(exc)]) from None
