"""REST for the serial console's recordings (added to the v1 API by console/rest.py).

The console itself is a websocket (ws/machines/<hostname>/console/, serialconsole/consumers.py); what a script
needs is the sessions' record and their recordings. Technicians only, like the pages: a recording holds what
was typed.
"""

from __future__ import annotations

from datetime import datetime

from django.shortcuts import get_object_or_404
from ninja import Path, Query, Router, Schema
from ninja.errors import HttpError

from accounts.roles import Role, has_role
from core.edge import DbId, Text
from core.paging import PageParams, page_of, page_schema
from core.recordings import cast_download
from inventory.models import Machine
from serialconsole.models import ConsoleSession

router = Router(tags=["console"])


class ConsoleSessionOut(Schema):
    id: int
    machine: str
    driver: str
    opened_by: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str
    end_message: str
    bytes_out: int
    bytes_in: int
    cast_bytes: int
    truncated: bool
    replay_url: str
    cast_url: str


ConsoleSessionPage = page_schema(ConsoleSessionOut, "ConsoleSessionPage")


def _need_technician(request) -> None:
    if not has_role(request.auth, Role.TECHNICIAN):
        raise HttpError(403, "This needs the technician role.")


def _session(s: ConsoleSession) -> dict:
    return {
        "id": s.pk,
        "machine": s.hostname,
        "driver": s.driver,
        "opened_by": s.opened_by_label,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "end_reason": s.end_reason,
        "end_message": s.end_message,
        "bytes_out": s.bytes_out,
        "bytes_in": s.bytes_in,
        "cast_bytes": s.cast_bytes,
        "truncated": s.truncated,
        "replay_url": s.get_absolute_url(),
        "cast_url": f"/api/v1/console-sessions/{s.pk}/cast",
    }


@router.get("machines/{hostname}/console-sessions", response=ConsoleSessionPage)
def list_console_sessions(request, hostname: Path[Text], params: Query[PageParams]):
    """The machine's serial-console sessions, newest first."""
    _need_technician(request)
    machine = get_object_or_404(Machine, hostname=hostname)
    return page_of(ConsoleSession.objects.filter(machine=machine).order_by("-started_at", "-pk"), params, _session)


@router.get("console-sessions/{session_id}/cast")
def console_session_cast(request, session_id: Path[DbId]):
    """The session's recording, asciicast v2 (a JSON header line, then [seconds, "o"|"i"|"m", text] lines)."""
    _need_technician(request)
    session = get_object_or_404(ConsoleSession, pk=session_id)
    if not session.cast_path.exists():
        raise HttpError(404, f"Console session {session.pk} has no recording (it never connected).")
    return cast_download(session.cast_path, f"{session.hostname}-console-{session.pk}.cast")
