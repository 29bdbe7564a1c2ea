"""REST for batches (added to the v1 API by console/rest.py): installs started together, admitted under
concurrency caps with a power-on stagger; listed, read, started, paused, resumed and cancelled."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Router, Schema, Status

from accounts.roles import Role
from core.edge import DbId
from core.paging import PageParams, page_of, page_schema
from core.problems import Problem
from installs import batches as batch_service
from installs.models import Batch, BatchState, Install

from .rest_base import actor, need
from .rest_installs import StartIn, WhyIn, refused, start_batch_of

router = Router(tags=["batches"])


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
    installs: list[int] = Field(description="Its installs' ids, oldest first (GET installs?batch= lists them whole).")


BatchPage = page_schema(BatchOut, "BatchPage")


class BatchFilters(PageParams):
    state: BatchState | None = Field(None, description="running, paused, cancelled or finished.")


def _batches():
    """Batches with their installs' ids in one more query, whatever the number of batches."""
    return Batch.objects.prefetch_related(Prefetch("installs", queryset=Install.objects.only("pk", "batch_id")))


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
        "installs": sorted(i.pk for i in b.installs.all()),
    }


@router.get("batches", response=BatchPage)
def list_batches(request, filters: Query[BatchFilters]):
    """Newest first, each with its installs' ids as GET batches/{id} shows them."""
    need(request, Role.VIEWER)
    batches = _batches().order_by("-id")
    if filters.state:
        batches = batches.filter(state=filters.state)
    return page_of(batches, filters, _batch)


@router.post("batches", response={201: BatchOut, 409: Problem})
def start_batch(request, body: StartIn):
    """Like POST installs, answering with the batch: admitted under its caps, with a power-on stagger."""
    return Status(201, _batch(_batches().get(pk=start_batch_of(request, body).pk)))


@router.get("batches/{batch_id}", response=BatchOut)
def get_batch(request, batch_id: Path[DbId]):
    need(request, Role.VIEWER)
    return _batch(get_object_or_404(_batches(), pk=batch_id))


def _set_batch(request, batch_id: int, to: str, why: str) -> dict:
    need(request, Role.TECHNICIAN)
    get_object_or_404(Batch.objects.only("pk"), pk=batch_id)
    try:
        batch_service.set_batch_state(batch_id, to, actor(request), why)
    except batch_service.InstallRefused as exc:
        raise refused(exc) from None
    return _batch(_batches().get(pk=batch_id))


@router.post("batches/{batch_id}/pause", response={200: BatchOut, 409: Problem})
def pause_batch(request, batch_id: Path[DbId], body: WhyIn = None):
    return _set_batch(request, batch_id, BatchState.PAUSED, body.why if body else "")


@router.post("batches/{batch_id}/resume", response={200: BatchOut, 409: Problem})
def resume_batch(request, batch_id: Path[DbId], body: WhyIn = None):
    return _set_batch(request, batch_id, BatchState.RUNNING, body.why if body else "")


@router.post("batches/{batch_id}/cancel", response={200: BatchOut, 409: Problem})
def cancel_batch(request, batch_id: Path[DbId], body: WhyIn = None):
    return _set_batch(request, batch_id, BatchState.CANCELLED, body.why if body else "")
