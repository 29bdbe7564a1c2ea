"""REST for installs (added to the v1 API by console/rest.py): the install list with the page's filters
(console/install_filters.py), one install with its steps, its events, and starting, cancelling and retrying."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import field_validator

from accounts.roles import Role
from core.edge import BIGINT_MAX, DbCount, DbId, Text
from core.paging import PageParams, page_of, page_schema, whole
from core.problems import Problem
from installs import batches as batch_service
from installs import engine
from installs.models import Batch, Event, Install
from inventory.models import Machine, OSProfile

from .install_filters import InstallQuery, install_queryset
from .queries import installs_for_pages
from .rest_base import RefusedError, actor, filtered_page, need

router = Router(tags=["installs"])


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


InstallPage = page_schema(InstallOut, "InstallPage")
EventPage = page_schema(EventOut, "EventPage")


class InstallFilters(PageParams):
    state: Text = Field("", description="A state, or active for every install not yet ended.")
    machine: Text = Field("", description="Part of the machine's hostname.")
    site: Text = Field("", description="The machine's site (its slug).")
    profile: Text = ""
    batch: DbId | None = None
    requested_by: Text = Field("", description="Who asked for it: a username, or system.")
    since: Text = Field("", description="Requested on or after: a day (YYYY-MM-DD, all of it) or an ISO 8601 time.")
    until: Text = Field("", description="Requested on or before: a day (YYYY-MM-DD, all of it) or an ISO 8601 time.")


class EventFilters(PageParams):
    after: int = Field(0, ge=0, le=BIGINT_MAX, description="Only events after this event id.")


class StartIn(Schema):
    # tag first: the check of machines (which names machines as the field at fault) reads it.
    tag: Text = Field("", max_length=50, description="Every machine with this tag (instead of ``machines``).")
    machines: list[Text] = Field(
        default_factory=list,
        max_length=5000,
        validate_default=True,
        description="Hostnames; or, instead, every machine with ``tag``.",
    )
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

    @field_validator("machines")
    @classmethod
    def machines_or_tag(cls, machines, info):
        if bool(machines) == bool(info.data.get("tag")):
            raise ValueError("give the machines (hostnames) or a tag, one of the two")
        return machines


class WhyIn(Schema):
    why: Text = Field("", max_length=500)


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


@router.get("installs", response=InstallPage)
def list_installs(request, filters: Query[InstallFilters]):
    """Newest first, with the install list page's filters: state (``active`` for every install not yet
    ended), machine (part of the hostname), site, profile, batch, requested_by, since, until."""
    return filtered_page(request, filters, InstallQuery, install_queryset, _install)


@router.get("installs/{install_id}", response=InstallDetailOut)
def get_install(request, install_id: Path[DbId]):
    need(request, Role.VIEWER)
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


@router.get("installs/{install_id}/events", response=EventPage)
def install_events(request, install_id: Path[DbId], filters: Query[EventFilters]):
    """Events oldest first; ``after`` keeps only those after that event id: poll with the last id you saw, as
    the browser does (the envelope's ``count`` is then what is left to read)."""
    need(request, Role.VIEWER)
    install = get_object_or_404(Install.objects.only("pk"), pk=install_id)
    events = Event.objects.filter(install=install, id__gt=filters.after).order_by("id")
    return page_of(events, filters, Event.as_message)


def start_batch_of(request, body: StartIn) -> Batch:
    """The batch ``body`` asks for, through the service function (POST installs and POST batches)."""
    need(request, Role.TECHNICIAN)
    profile = OSProfile.objects.filter(name=body.profile).first()
    if profile is None:
        raise HttpError(404, f"No profile {body.profile!r}.")
    if body.tag:
        found = dict(Machine.objects.filter(tags__name=body.tag.lower()).values_list("hostname", "pk"))
        if not found:
            raise HttpError(404, f"No machine has tag {body.tag!r}.")
    else:
        found = dict(Machine.objects.filter(hostname__in=body.machines).values_list("hostname", "pk"))
        missing = sorted(set(body.machines) - set(found))
        if missing:
            raise HttpError(404, f"No such machine(s): {', '.join(missing[:20])}.")
    try:
        return batch_service.request_installs(
            list(found.values()),
            profile,
            actor(request),
            name=body.name,
            max_per_site=body.max_per_site,
            max_per_rack=body.max_per_rack,
            stagger_s=body.stagger_s,
            boot=body.boot,
        )
    except batch_service.InstallRefused as exc:
        raise refused(exc) from None


def refused(exc: batch_service.InstallRefused) -> RefusedError:
    return RefusedError(list(exc.args[0]))


@router.post("installs", response={201: InstallPage, 409: Problem})
def start_installs(request, body: StartIn):
    """Install ``profile`` on the machines (one batch; all or none are accepted): the new installs, all in one
    page of the envelope."""
    batch = start_batch_of(request, body)
    return Status(201, whole(installs_for_pages().filter(batch=batch).order_by("pk"), _install))


@router.post("installs/{install_id}/cancel", response={200: InstallOut, 409: Problem})
def cancel_install(request, install_id: Path[DbId], body: WhyIn = None):
    need(request, Role.TECHNICIAN)
    get_object_or_404(Install.objects.only("pk"), pk=install_id)
    try:
        engine.cancel(install_id, actor=actor(request), why=body.why if body else "")
    except engine.EngineError as exc:
        raise RefusedError([str(exc)]) from None
    return _install(installs_for_pages().get(pk=install_id))


@router.post("installs/{install_id}/retry", response={201: InstallPage, 409: Problem})
def retry_install(request, install_id: Path[DbId]):
    need(request, Role.TECHNICIAN)
    get_object_or_404(Install.objects.only("pk"), pk=install_id)
    try:
        batch = batch_service.retry(install_id, actor(request))
    except batch_service.InstallRefused as exc:
        raise refused(exc) from None
    return Status(201, whole(installs_for_pages().filter(batch=batch).order_by("pk"), _install))
