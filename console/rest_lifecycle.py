"""REST for a machine's lifecycle (added to the v1 API by console/rest.py): the action a person takes on it, and
the hardware facts commissioning recorded, version by version; with the hardware filters and summary the machine
list and detail use.

The same checks and service functions as the pages (console/lifecycle_actions.py): an action the table does not
allow from where the machine is, or that protection or another install refuses, is a 409 with the sentence; what
cannot be an action (a missing reason, a profile for a release) is a 400 naming the field, before any write.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import StrictInt

from accounts.roles import Role, has_role
from audit.service import Actor
from console import lifecycle_actions
from core.edge import INT_MAX, Refusal, Text
from core.paging import PageParams, page_of, page_schema
from core.problems import Problem
from installs.models import ACTIVE_STATES, Install
from inventory import lifecycle
from inventory.models import Machine, MachineFacts

router = Router(tags=["machines"])
Version = Annotated[int, Field(ge=1, le=INT_MAX)]


class HardwareOut(Schema):
    """What the last commissioning recorded; null: not known (never commissioned, or not reported)."""

    commissioned_at: datetime | None = None
    cpu_model: str = ""
    cpu_cores: int | None = None
    memory_bytes: int | None = None
    disk_count: int | None = None
    ssd_count: int | None = None
    hdd_count: int | None = None
    nvme_count: int | None = None
    nic_max_speed_mbps: int | None = None


class HardwareFilters(Schema):
    """The machine list's hardware filters. Each reads what commissioning recorded: a machine never commissioned
    matches none of them. A value that means nothing is a 400 naming the parameter."""

    memory_gib_min: Text = Field("", max_length=20, description="Memory at least this many GiB, e.g. 256 or 0.5.")
    cpu_model: Text = Field("", max_length=200, description="The CPU model contains this (any case).")
    cores_min: Text = Field("", max_length=20, description="At least this many CPU cores.")
    disks_min: Text = Field("", max_length=20, description="At least this many disks.")
    disk_type: Literal["", "ssd", "hdd", "nvme"] = Field("", description="At least one disk of this type.")
    nic_speed_min: Text = Field("", max_length=20, description="The fastest NIC at least this fast, in Mb/s.")
    switch: Text = Field("", max_length=200, description="A NIC's LLDP neighbour: its name contains this.")
    switch_port: Text = Field(
        "", max_length=200, description="A NIC's LLDP port id is this (with switch: on that switch)."
    )


class LifecycleIn(Schema):
    action: Literal[tuple(lifecycle.ACTIONS)] = Field(  # type: ignore[valid-type]
        description="commission, test, deploy, release (operations: 202 with the batch); mark-broken, mark-fixed, "
        "enter-maintenance, exit-maintenance (status changes: 200). GET machines/{hostname} lists the machine's "
        "``actions``."
    )
    reason: Text = Field(
        "", max_length=lifecycle_actions.REASON_MAX, description="Why (status changes; required but for exit)."
    )
    profile: Text = Field("", max_length=100, description="deploy: the OS profile to install.")
    boot: Literal["", "network", "virtual-media"] = Field("", description="deploy: how the machine boots.")
    workflow: Text = Field("", max_length=64, description="test: the workflow to run (default stock-test).")
    cpu_burn_s: StrictInt | None = Field(
        None, ge=0, le=lifecycle_actions.CPU_BURN_MAX_S, description="test: how long to burn the CPUs, in seconds."
    )
    nic_speed_mbps: StrictInt | None = Field(
        None,
        ge=0,
        le=lifecycle_actions.NIC_SPEED_MAX_MBPS,
        description="test: the link speed the NIC test expects, in Mb/s (0 or none: it only reports).",
    )


class OperationOut(Schema):
    action: str
    machine: str
    batch: int
    installs: list[int]


class LifecycleOut(Schema):
    machine: str
    status: str
    status_reason: str
    status_changed_at: datetime | None = None
    actions: list[str] = Field(description="What the machine can do from its status now.")


class FactChangeOut(Schema):
    path: str
    before: Any = None
    after: Any = None


class FactsVersionOut(Schema):
    version: int
    collected_at: datetime
    source: str
    changes: list[FactChangeOut] = Field(description="What differs from the version before.")


FactsVersionPage = page_schema(FactsVersionOut, "FactsVersionPage")


class FactsOut(FactsVersionOut):
    facts: dict


def _need(request, role: Role) -> None:
    if not has_role(request.auth, role):
        raise HttpError(403, f"This needs the {role.label} role.")


def _refused(reasons: list[str]) -> HttpError:
    error = HttpError(409, "Refused: " + " ".join(reasons))
    error.problems = reasons  # listed in the problem document's ``problems``
    return error


def offered(machine: Machine, has_active_install: bool | None = None) -> list[str]:
    """The actions a person may take now (console/lifecycle_actions.py ``offered``); the install is looked up
    when the caller does not know."""
    if has_active_install is None:
        has_active_install = Install.objects.filter(machine=machine, state__in=ACTIVE_STATES).exists()
    return [a.name for a in lifecycle_actions.offered(machine, has_active_install)]


def lifecycle_of(machine: Machine) -> dict:
    return {
        "machine": machine.hostname,
        "status": machine.status,
        "status_reason": machine.status_reason,
        "status_changed_at": machine.status_changed_at,
        "actions": offered(machine),
    }


@router.post(
    "machines/{hostname}/lifecycle",
    response={200: LifecycleOut, 202: OperationOut, 409: Problem},
    operation_id="machine_lifecycle_action",
)
def machine_lifecycle_action(request, hostname: Path[Text], body: LifecycleIn):
    """Take a lifecycle action on the machine. An operation is requested as a batch of one install (202, with
    its ids; follow it with GET installs/{id}); a status change is made at once and audited with its reason
    (200). Refused (409, the sentence in ``problems``) when the machine's status does not allow the action, or
    protection or another install refuses it."""
    _need(request, Role.TECHNICIAN)
    machine = get_object_or_404(Machine.objects.select_related("rack__site"), hostname=hostname)
    try:
        req = lifecycle_actions.parse(
            body.action,
            reason=body.reason,
            profile=body.profile,
            workflow=body.workflow,
            cpu_burn_s=body.cpu_burn_s,
            nic_speed_mbps=body.nic_speed_mbps,
            boot=body.boot,
        )
    except lifecycle_actions.Invalid as exc:
        raise Refusal(exc.field, exc.problem) from None
    actor = Actor.for_user(request.auth)
    try:
        if req.is_operation:
            batch = lifecycle_actions.request_operation([machine], req, actor)
            installs = list(batch.installs.order_by("pk").values_list("pk", flat=True))
            return Status(202, {"action": req.action, "machine": machine.hostname, "batch": batch.pk,
                                "installs": installs})  # fmt: skip
        machine = lifecycle_actions.mark(machine.pk, req, actor)
    except lifecycle_actions.Refused as exc:
        raise _refused(exc.problems) from None
    return Status(200, lifecycle_of(machine))


def _version(row: MachineFacts, *, with_facts: bool) -> dict:
    changes = [c for c in row.changes if isinstance(c, dict)] if isinstance(row.changes, list) else []
    data = {
        "version": row.version,
        "collected_at": row.collected_at,
        "source": row.source,
        "changes": [{"path": str(c.get("path", "")), "before": c.get("before"), "after": c.get("after")}
                    for c in changes],
    }  # fmt: skip
    if with_facts:
        data["facts"] = row.facts if isinstance(row.facts, dict) else {}
    return data


@router.get("machines/{hostname}/facts", response=FactsVersionPage, operation_id="machine_facts_versions")
def machine_facts_versions(request, hostname: Path[Text], params: Query[PageParams]):
    """Every version of the machine's hardware facts, newest first, with what changed since the one before."""
    _need(request, Role.VIEWER)
    machine = get_object_or_404(Machine.objects.only("pk"), hostname=hostname)
    rows = MachineFacts.objects.filter(machine=machine).defer("facts").order_by("-version")
    return page_of(rows, params, partial(_version, with_facts=False))


@router.get("machines/{hostname}/facts/{version}", response=FactsOut, operation_id="machine_facts_version")
def machine_facts_version(request, hostname: Path[Text], version: Path[Version]):
    """One version of the machine's hardware facts, whole."""
    _need(request, Role.VIEWER)
    machine = get_object_or_404(Machine.objects.only("pk", "hostname"), hostname=hostname)
    row = MachineFacts.objects.filter(machine=machine, version=version).first()
    if row is None:
        raise HttpError(404, f"{machine.hostname} has no facts version {version}.")
    return _version(row, with_facts=True)
