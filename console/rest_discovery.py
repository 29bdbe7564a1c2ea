"""REST for discovered machines (added to the v1 API by console/rest.py): what the Discovered pages show and do.
Viewers read; technicians accept, discard, ask for the facts again and forget, through installs/discovery.py,
which audits. (What the machines themselves call is installs/discovery_api.py, without a login.)"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.core.exceptions import ValidationError
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError

from accounts.roles import Role, has_role
from audit.service import Actor
from core import problems
from core.edge import DbId, Text
from core.paging import PageParams, page_of, page_schema
from core.problems import Problem
from installs import discovery
from installs.discovery_facts import summary
from inventory.editing import find_rack
from inventory.models import MAX_RACK_U, DiscoveredMachine

router = Router(tags=["discovered"])


class DiskOut(Schema):
    name: str
    size_bytes: int | None = None
    model: str
    serial: str


class DiscoveredNicOut(Schema):
    name: str
    mac: str
    speed_mbps: int | None = None


class DiscoveredOut(Schema):
    id: int
    site: str
    mac: str = Field(description="The boot MAC it registered with.")
    address: str = Field(description="The address it registered from.")
    state: Literal["waiting", "accepted", "discarded"]
    vendor: str
    model: str
    serial: str
    cpus: int | None = None
    cpu_model: str
    memory_bytes: int | None = None
    disks: list[DiskOut]
    nics: list[DiscoveredNicOut]
    bmc_address: str = Field(description="What its memory OS read from its BMC; empty: not reported.")
    first_seen_at: datetime
    last_seen_at: datetime
    registrations: int
    pending_task: str | None = Field(None, description="inventory or poweroff, handed out at its next poll.")
    machine: str | None = Field(None, description="Its hostname in inventory, once accepted.")
    decided_by: str
    decided_at: datetime | None = None


class DiscoveredDetailOut(DiscoveredOut):
    facts: dict = Field(description="Every fact, as its agent reported it (bounded: docs/agent-api.md).")


class DiscoveredFilters(PageParams):
    site: Text = ""
    state: Literal["waiting", "accepted", "discarded", "all"] = "waiting"


DiscoveredPage = page_schema(DiscoveredOut, "DiscoveredPage")


class AcceptIn(Schema):
    hostname: Text = Field(..., min_length=1, max_length=253)
    rack: Text | DbId = Field(..., description='"site/rack" (e.g. dc1/r01) or the rack\'s id.')
    position_u: int = Field(..., ge=1, le=MAX_RACK_U, description="Lowest rack unit it occupies.")
    height_u: int = Field(1, ge=1, le=MAX_RACK_U)


class AcceptedOut(Schema):
    id: int = Field(description="The new machine's id.")
    hostname: str
    rack: str
    position_u: int
    status: str
    discovered: DiscoveredOut


def _need(request, role: Role) -> None:
    if not has_role(request.auth, role):
        raise HttpError(403, f"This needs the {role.label} role.")


def _entry(pk: int) -> DiscoveredMachine:
    entry = DiscoveredMachine.objects.select_related("site", "machine").filter(pk=pk).first()
    if entry is None:
        raise HttpError(404, f"No discovered machine {pk}.")
    return entry


def _out(entry: DiscoveredMachine, *, facts: bool = False) -> dict:
    out = {
        "id": entry.pk,
        "site": entry.site.slug,
        "mac": entry.mac,
        "address": entry.address,
        "state": entry.state,
        **summary(entry.facts),
        "first_seen_at": entry.first_seen_at,
        "last_seen_at": entry.last_seen_at,
        "registrations": entry.registrations,
        "pending_task": (entry.pending_task or {}).get("kind"),
        "machine": entry.machine.hostname if entry.machine else None,
        "decided_by": entry.decided_by_label,
        "decided_at": entry.decided_at,
    }
    if facts:
        out["facts"] = entry.facts
    return out


def _refused(exc: discovery.DiscoveryRefused):
    return problems.response(409, str(exc), problems=[str(exc)])


def _invalid(exc: ValidationError):
    """The accept's validation errors as a 400 naming the first field (hostname, rack, position_u, ...)."""
    if hasattr(exc, "error_dict"):
        errors = [{"loc": ["body", "body", f], "msg": m, "type": "value_error"} for f, ms in exc.message_dict.items()
                  for m in ms]  # fmt: skip
    else:
        errors = [{"loc": ["body", "body"], "msg": m, "type": "value_error"} for m in exc.messages]
    return problems.respond(problems.from_validation_errors(errors))


@router.get("discovered", response=DiscoveredPage)
def list_discovered(request, filters: Query[DiscoveredFilters]):
    """Discovered machines, the most recently seen first: waiting ones unless ``state`` says otherwise."""
    _need(request, Role.VIEWER)
    entries = DiscoveredMachine.objects.select_related("site", "machine").order_by("-last_seen_at", "-pk")
    if filters.site:
        entries = entries.filter(site__slug=filters.site)
    if filters.state != "all":
        entries = entries.filter(state=filters.state)
    return page_of(entries, filters, _out)


@router.get("discovered/{entry_id}", response=DiscoveredDetailOut)
def get_discovered(request, entry_id: Path[DbId]):
    _need(request, Role.VIEWER)
    return _out(_entry(entry_id), facts=True)


@router.post("discovered/{entry_id}/accept", response={201: AcceptedOut, 400: Problem, 409: Problem})
def accept_discovered(request, entry_id: Path[DbId], body: AcceptIn):
    """Into inventory (status new) at the rack position given, its NICs and BMC from its facts; its agent is then
    told to power it off. 400 names what the admin's validation refused (a taken hostname, an overlap)."""
    _need(request, Role.TECHNICIAN)
    entry = _entry(entry_id)
    try:
        rack = find_rack(body.rack)
        placement = discovery.Placement(body.hostname, rack, body.position_u, body.height_u)
        machine = discovery.accept(entry.pk, placement, Actor.for_user(request.auth))
    except ValidationError as exc:
        return _invalid(exc)
    except discovery.DiscoveryRefused as exc:
        return _refused(exc)
    accepted = {
        "id": machine.pk,
        "hostname": machine.hostname,
        "rack": str(machine.rack),
        "position_u": machine.position_u,
        "status": machine.status,
        "discovered": _out(_entry(entry.pk)),
    }
    return Status(201, accepted)


def _act(request, entry_id: int, action) -> int:
    """A technician's action on the entry; 409 with the reason when it cannot be done."""
    _need(request, Role.TECHNICIAN)
    entry = _entry(entry_id)
    try:
        action(entry.pk, Actor.for_user(request.auth))
    except discovery.DiscoveryRefused as exc:
        refused = HttpError(409, str(exc))
        refused.problems = [str(exc)]  # the reasons a 409 lists (core/problems.py)
        raise refused from None
    return entry.pk


@router.post("discovered/{entry_id}/discard", response={200: DiscoveredOut, 409: Problem})
def discard_discovered(request, entry_id: Path[DbId]):
    """Not ours (or not now): its agent powers it off, and it is refused if it registers again until forgotten."""
    return _out(_entry(_act(request, entry_id, discovery.discard)))


@router.post("discovered/{entry_id}/inventory", response={200: DiscoveredOut, 409: Problem})
def refresh_discovered(request, entry_id: Path[DbId]):
    """Have its agent collect and report its facts again, at its next poll."""
    return _out(_entry(_act(request, entry_id, discovery.request_inventory)))


@router.post("discovered/{entry_id}/forget", response={204: None, 409: Problem})
def forget_discovered(request, entry_id: Path[DbId]):
    """Delete a discarded entry, so that the machine is discovered afresh when it next registers."""
    _act(request, entry_id, discovery.forget)
    return Status(204, None)
