"""REST for reachability and credentials (added to the v1 API by console/rest.py): ping machines' hosts now, and
test their BMC credentials with one login attempt each."""

from __future__ import annotations

from datetime import datetime

from django.shortcuts import get_object_or_404
from ninja import Field, Path, Router, Schema, Status
from ninja.errors import HttpError

from accounts.roles import Role
from core.edge import DbId, Text
from core.problems import Problem
from inventory import credentials_check, hostping
from inventory.models import CredentialCheck, Machine

from .rest_base import RefusedError, actor, need

router = Router(tags=["machines"])


class MachinesIn(Schema):
    machines: list[Text] = Field(..., min_length=1, max_length=credentials_check.MAX_MACHINES, description="Hostnames.")


class JobsQueuedOut(Schema):
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


@router.post("host-pings", response={202: JobsQueuedOut, 409: Problem})
def ping_hosts(request, body: MachinesIn):
    """Ping these machines' hosts now from their sites' workers; the results land in each machine's ``host``."""
    need(request, Role.TECHNICIAN)
    try:
        jobs = hostping.enqueue_host_pings(_named_machines(body.machines), actor(request))
    except hostping.HostPingRefused as exc:
        raise RefusedError([str(exc)]) from None
    return Status(202, {"jobs": jobs})


@router.post("credential-tests", response={201: CredentialTestOut, 409: Problem})
def start_credential_test(request, body: MachinesIn):
    """Test the BMC credentials of these machines: one login attempt per BMC, never repeated (no lockout),
    run by their sites' workers. Poll GET credential-tests/{id} until ``finished_at`` is set."""
    need(request, Role.TECHNICIAN)
    try:
        check = credentials_check.start(_named_machines(body.machines), actor(request))
    except credentials_check.CheckRefused as exc:
        raise RefusedError([str(exc)]) from None
    return Status(201, _credential_test(check))


@router.get("credential-tests/{check_id}", response=CredentialTestOut)
def get_credential_test(request, check_id: Path[DbId]):
    need(request, Role.VIEWER)
    return _credential_test(get_object_or_404(CredentialCheck, pk=check_id))
