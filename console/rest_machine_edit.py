"""REST for writing machines, their NICs and their BMC, and for pointing a machine's boot at a device (added to the
v1 API by console/rest.py). GET machines and machines/{hostname} (console/rest.py) read them.

Machines, NICs and BMCs are the admin role's, as in the admin site; reads of NICs and the BMC are a viewer's. The
BMC password is write-only: answers say ``password_set``, and the audit entry only that it changed. The boot
device is a technician's, as the power actions are, queued on the machine's site worker (inventory/boot.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import StrictBool

from accounts.roles import Role
from core.edge import DbId, Text
from core.paging import PageParams, page_of, page_schema
from core.problems import Problem
from inventory import boot, editing, machine_editing, power, tagging
from inventory.models import BMC, MAX_RACK_U, NIC, BootMode, Depth, Machine, bmc_driver_choices

from .rest_inventory import WRITES, StrictIn, actor, answered, need, refused, written
from .rest_machines import NicOut

router = Router(tags=["inventory"])

Hostname = Annotated[Text, Field(min_length=1, max_length=253)]
Rack_U = Annotated[int, Field(ge=1, le=MAX_RACK_U)]
Short = Annotated[Text, Field(max_length=100)]


# --- schemas -------------------------------------------------------------------------------------------------


class NicChangeIn(StrictIn):
    name: Annotated[Text, Field(max_length=32)] = None
    mac: Annotated[Text, Field(min_length=1, max_length=64, description="Any common notation; stored as aa:bb:…")] = (
        None
    )
    is_pxe: StrictBool = Field(None, description="The NIC it network-boots from; one per machine.")
    ip: Annotated[Text, Field(max_length=64)] | None = None
    prefix_len: Annotated[int, Field(ge=0, le=128)] | None = None
    gateway: Annotated[Text, Field(max_length=64)] | None = None
    vlan: Annotated[int, Field(ge=1, le=4094)] | None = None


class NicIn(NicChangeIn):
    mac: Annotated[Text, Field(min_length=1, max_length=64, description="Any common notation; stored as aa:bb:…")]


class BmcSettingsOut(Schema):
    driver: str
    address: str
    port: int
    username: str = Field(description="Empty: the site's default BMC user.")
    password_set: bool = Field(description="Whether it has a password of its own (write-only; else the site's).")


class BmcChangeIn(StrictIn):
    driver: Annotated[Text, Field(min_length=1, max_length=16, description="See GET drivers.")] = None
    address: Annotated[Text, Field(min_length=1, max_length=253, description="IP address or DNS name.")] = None
    port: Annotated[int, Field(ge=1, le=65535)] = None
    username: Annotated[Text, Field(max_length=64)] = None
    password: Annotated[Text, Field(max_length=1000)] = Field(
        None,
        description='Write-only, stored encrypted; never in an answer. "" clears it (the site\'s default is used).',
        json_schema_extra={"writeOnly": True},
    )


class BmcIn(BmcChangeIn):
    address: Annotated[Text, Field(min_length=1, max_length=253, description="IP address or DNS name.")]


class MachineEditOut(Schema):
    id: int
    hostname: str
    rack: str | None = Field(None, description="site/rack")
    position_u: int | None = None
    height_u: int
    depth: str
    serial: str
    vendor: str
    model: str
    boot_mode: str
    status: str
    protected: bool
    nics: list[NicOut]
    bmc: BmcSettingsOut | None = None
    tags: list[str]


class MachineChangeIn(StrictIn):
    hostname: Hostname = None
    rack: Text | DbId | None = Field(None, description='"site/rack" (e.g. dc1/r01) or its id; null: unracked.')
    position_u: Rack_U | None = Field(None, description="The lowest rack unit it occupies.")
    height_u: Rack_U = None
    depth: Literal[tuple(Depth.values)] = Field(  # type: ignore[valid-type]
        None, description="full, or half depth at the front or the rear (opposite halves share rack units)."
    )
    serial: Short = None
    vendor: Short = None
    model: Short = None
    boot_mode: Literal[tuple(BootMode.values)] = None  # type: ignore[valid-type]
    tags: list[Annotated[Text, Field(max_length=50)]] = Field(
        None, max_length=tagging.MAX_TAGS, description="Its tags, all of them (a new name makes a new tag)."
    )


class MachineIn(MachineChangeIn):
    hostname: Hostname
    nics: list[NicIn] = Field(default_factory=list, max_length=64)
    bmc: BmcIn | None = None


class BootIn(StrictIn):
    device: Literal[tuple(boot.DEVICES)] = Field(  # type: ignore[valid-type]
        description="pxe (the network), disk or cd (virtual media or a drive)."
    )
    persistent: StrictBool = Field(False, description="false: the next boot only; true: every boot from now on.")


class BootQueuedOut(Schema):
    job: str = Field(description="The site worker's job id; the audit log says how it went (machine.boot).")
    machine: str
    device: str
    persistent: bool


NicPage = page_schema(NicOut, "NicPage")


# --- rendering -----------------------------------------------------------------------------------------------


def _nic(nic: NIC) -> dict:
    return {name: getattr(nic, name) for name in machine_editing.NIC_FIELDS}


def _bmc(bmc: BMC) -> dict:
    return {name: getattr(bmc, name) for name in machine_editing.BMC_FIELDS} | {"password_set": bmc.has_password}


def _machine(machine: Machine) -> dict:
    machine = Machine.objects.select_related("rack__site", "bmc").prefetch_related("nics", "tags").get(pk=machine.pk)
    bmc = getattr(machine, "bmc", None)  # the reverse one-to-one raises (an AttributeError) when absent
    return {
        **{name: getattr(machine, name) for name in ("id", "hostname", "position_u", "height_u", "depth", "serial")},
        **{name: getattr(machine, name) for name in ("vendor", "model", "boot_mode", "status", "protected")},
        "rack": str(machine.rack) if machine.rack else None,
        "nics": [_nic(n) for n in machine.nics.all()],
        "bmc": _bmc(bmc) if bmc is not None else None,
        "tags": [t.name for t in machine.tags.all()],
    }


def _found(hostname: str) -> Machine:
    return get_object_or_404(Machine.objects.select_related("rack__site", "bmc"), hostname=hostname)


def _nic_call(call, *args):
    """A NIC write: no such NIC is a 404, as no such machine is."""
    try:
        return written(call, *args)
    except NIC.DoesNotExist as exc:
        raise HttpError(404, str(exc)) from None


# --- machines ------------------------------------------------------------------------------------------------


@router.post("machines", response={201: MachineEditOut, **WRITES})
def create_machine(request, body: MachineIn):
    """A machine, with its NICs and BMC when given: all checked first (a taken hostname or MAC, an overlap in the
    rack, a rack that does not exist are 400s naming the field), then written in one transaction."""
    need(request, Role.ADMIN)
    values = body.model_dump(exclude_unset=True, exclude={"nics", "bmc"})
    nics = [n.model_dump(exclude_unset=True) for n in body.nics]
    bmc = body.bmc.model_dump(exclude_unset=True) if body.bmc is not None else None
    result = written(lambda: machine_editing.create_machine(values, actor(request), nics=nics, bmc=bmc))
    return answered(result, _machine, 201)


@router.patch("machines/{hostname}", response={200: MachineEditOut, **WRITES})
def update_machine(request, hostname: Path[Text], body: MachineChangeIn):
    """Change the fields given: rename, move (rack and position), re-label, re-tag (``tags``: all of them, replacing
    the machine's). NICs and the BMC have their own."""
    need(request, Role.ADMIN)
    values = body.model_dump(exclude_unset=True)
    return answered(written(machine_editing.update_machine, hostname, values, actor(request)), _machine)


@router.delete("machines/{hostname}", response={204: None, 409: Problem})
def delete_machine(request, hostname: Path[Text]):
    """Refused (409) while protected, while an install runs on it, and while installs are in its history."""
    need(request, Role.ADMIN)
    return answered(written(machine_editing.delete_machine, hostname, actor(request)) or None, lambda _: None, 204)


# --- NICs ----------------------------------------------------------------------------------------------------


@router.get("machines/{hostname}/nics", response=NicPage)
def list_nics(request, hostname: Path[Text], params: Query[PageParams]):
    need(request, Role.VIEWER)
    machine = _found(hostname)
    return page_of(machine.nics.order_by("-is_pxe", "mac"), params, _nic)


@router.post("machines/{hostname}/nics", response={201: NicOut, **WRITES})
def add_nic(request, hostname: Path[Text], body: NicIn):
    need(request, Role.ADMIN)
    values = body.model_dump(exclude_unset=True)
    return answered(written(machine_editing.add_nic, hostname, values, actor(request)), _nic, 201)


@router.patch("machines/{hostname}/nics/{nic}", response={200: NicOut, **WRITES})
def update_nic(request, hostname: Path[Text], nic: Path[Annotated[Text, Field(max_length=64)]], body: NicChangeIn):
    """The NIC named by its MAC (any notation) or its name."""
    need(request, Role.ADMIN)
    values = body.model_dump(exclude_unset=True)
    return answered(_nic_call(machine_editing.update_nic, hostname, nic, values, actor(request)), _nic)


@router.delete("machines/{hostname}/nics/{nic}", response={204: None, **WRITES})
def delete_nic(request, hostname: Path[Text], nic: Path[Annotated[Text, Field(max_length=64)]]):
    need(request, Role.ADMIN)
    result = _nic_call(machine_editing.delete_nic, hostname, nic, actor(request))
    return answered(result or None, lambda _: None, 204)


# --- the BMC -------------------------------------------------------------------------------------------------


@router.get("machines/{hostname}/bmc", response=BmcSettingsOut)
def get_bmc(request, hostname: Path[Text]):
    need(request, Role.VIEWER)
    bmc = getattr(_found(hostname), "bmc", None)
    if bmc is None:
        raise HttpError(404, f"{hostname} has no BMC.")
    return _bmc(bmc)


def _write_bmc(request, hostname: str, values: dict, replace: bool):
    if "driver" in values and values["driver"] not in dict(bmc_driver_choices()):
        return written(_unknown_driver, values["driver"])
    try:
        result = written(machine_editing.write_bmc, hostname, values, actor(request), replace=replace)
    except BMC.DoesNotExist as exc:
        raise HttpError(404, str(exc)) from None
    if result is None or hasattr(result, "status_code"):
        return answered(result, _bmc)
    bmc, created = result
    return Status(201 if created else 200, _bmc(bmc))


def _unknown_driver(name: str):
    raise ValidationError({"driver": f"{name!r} is not a driver installed here (GET drivers lists them)."})


@router.put("machines/{hostname}/bmc", response={200: BmcSettingsOut, 201: BmcSettingsOut, **WRITES})
def put_bmc(request, hostname: Path[Text], body: BmcIn):
    """The machine's BMC as given, fields left out at their defaults (201 when it had none). The password is kept
    unless given."""
    need(request, Role.ADMIN)
    return _write_bmc(request, hostname, body.model_dump(exclude_unset=True), replace=True)


@router.patch("machines/{hostname}/bmc", response={200: BmcSettingsOut, **WRITES})
def patch_bmc(request, hostname: Path[Text], body: BmcChangeIn):
    """Change the fields given of the machine's BMC."""
    need(request, Role.ADMIN)
    return _write_bmc(request, hostname, body.model_dump(exclude_unset=True), replace=False)


# --- the boot device -----------------------------------------------------------------------------------------


@router.post("machines/{hostname}/boot", response={202: BootQueuedOut, 409: Problem}, tags=["machines"])
def set_boot_device(request, hostname: Path[Text], body: BootIn):
    """Point the machine's next boot (or, persistent, every boot) at a device, on its site's worker, as POST
    .../power does. Refused (409) on a protected machine for pxe and cd, and where its driver cannot."""
    need(request, Role.TECHNICIAN)
    machine = _found(hostname)
    try:
        job = boot.enqueue_boot(machine, body.device, body.persistent, actor(request))
    except power.PowerActionRefused as exc:
        return refused(editing.EditRefused([str(exc)]))
    return Status(202, {"job": job, "machine": machine.hostname, "device": body.device, "persistent": body.persistent})

