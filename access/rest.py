"""REST for SSH sessions (added to the v1 API by console/rest.py): open one for a script, list and read the
recorded ones, fetch a recording, end one (admins).

A script opens a session with POST machines/{hostname}/ssh-sessions, then drives it over the websocket the
answer names, with the same ``Authorization: Token <key>`` header on the handshake (access/consumers.py);
the session is recorded like a browser's. Technicians see their own sessions, admins all (access/shell_sessions.py).
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError

from accounts.roles import Role, has_role
from core.edge import DbId, Text
from core.paging import PageParams, page_of, page_schema
from core.problems import Problem
from inventory.models import Machine

from . import terminal
from .models import ShellSession
from .session_views import cast_response
from .shell_sessions import SessionFilters, may_read, visible_to

router = Router(tags=["ssh"])


class SessionOpenIn(Schema):
    reason: Text = Field("", max_length=500, description="Why; required on a protected machine.")
    principal: Text = Field("", max_length=32, description="The login on the machine; blank: the policy's default.")


class SshSessionOut(Schema):
    id: int
    machine: str
    site: str | None
    opened_by: str
    client: str = Field(description="browser, cli or api.")
    principal: str
    via: str = Field(description="The jump hosts it went through.")
    reason: str
    cert_key_id: str
    cert_serial: int | None
    cert_valid_before: datetime | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: str = Field(description="Blank while open; closed, exited, idle, expired, ended, failed, shutdown.")
    end_message: str
    ended_by: str | None
    bytes_in: int
    bytes_out: int
    cast_bytes: int
    truncated: bool
    replay_url: str
    cast_url: str


class SshSessionOpenedOut(SshSessionOut):
    websocket: str = Field(
        description="Connect within 30 s with the same Authorization header; binary frames are the terminal's "
        "bytes, text frames JSON (resize, close; ready, ended, error)."
    )


SshSessionPage = page_schema(SshSessionOut, "SshSessionPage")


class SshSessionFilters(PageParams):
    q: Text = Field("", description="Text typed or shown (as the terminal showed it).")
    user: Text = Field("", description="Who opened it (username).")
    machine: Text = ""
    state: Text = Field("", description="open or ended; blank for both.")


def _need(request, role: Role) -> None:
    if not has_role(request.auth, role):
        raise HttpError(403, f"This needs the {role.label} role.")


def _session(s: ShellSession) -> dict:
    return {
        "id": s.pk,
        "machine": s.hostname,
        "site": s.site.slug if s.site else None,
        "opened_by": s.opened_by_label,
        "client": s.client,
        "principal": s.principal,
        "via": s.via,
        "reason": s.reason,
        "cert_key_id": s.cert_key_id,
        "cert_serial": s.cert_serial,
        "cert_valid_before": s.cert_valid_before,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "end_reason": s.end_reason,
        "end_message": s.end_message,
        "ended_by": s.ended_by.get_username() if s.ended_by else None,
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        "cast_bytes": s.cast_bytes,
        "truncated": s.truncated,
        "replay_url": s.get_absolute_url(),
        "cast_url": f"/api/v1/ssh-sessions/{s.pk}/cast",
    }


def _readable(request, session_id: int) -> ShellSession:
    session = get_object_or_404(ShellSession.objects.select_related("site", "ended_by"), pk=session_id)
    if not may_read(request.auth, session):
        raise HttpError(403, "Only an admin may see another person's session.")
    return session


def _refused(message: str) -> HttpError:
    error = HttpError(409, "Refused: " + message)
    error.problems = [message]
    return error


@router.post("machines/{hostname}/ssh-sessions", response={201: SshSessionOpenedOut, 409: Problem})
def open_ssh_session(request, hostname: Path[Text], body: SessionOpenIn):
    """Open a recorded SSH session on the machine (the site's policy decides; 403 when it does not allow this
    user, 409 when it refuses as asked, e.g. a protected machine without a reason). Then connect to
    ``websocket`` within 30 s with the same token: the shell starts when the first frame says the size."""
    _need(request, Role.TECHNICIAN)
    machine = get_object_or_404(Machine.objects.select_related("rack__site"), hostname=hostname)
    try:
        session = terminal.open_session(
            request.auth, machine, reason=body.reason, client="api", principal=body.principal
        )
    except PermissionDenied as exc:
        raise HttpError(403, str(exc)) from None
    except terminal.SessionRefused as exc:
        raise _refused(exc.message) from None
    data = _session(session)
    data["websocket"] = f"/ws/machines/{quote(machine.hostname)}/terminal/?session={session.pk}"
    return Status(201, data)


@router.get("ssh-sessions", response=SshSessionPage)
def list_ssh_sessions(request, filters: Query[SshSessionFilters]):
    """SSH sessions, newest first: a technician's own, or everyone's for an admin."""
    _need(request, Role.TECHNICIAN)
    if filters.state not in ("", "open", "ended"):
        raise HttpError(400, "state: open, ended or blank")
    sessions = SessionFilters.from_params(filters.model_dump()).apply(visible_to(request.auth))
    sessions = sessions.select_related("ended_by").defer("transcript")
    return page_of(sessions, filters, _session)


@router.get("ssh-sessions/{session_id}", response=SshSessionOut)
def get_ssh_session(request, session_id: Path[DbId]):
    _need(request, Role.TECHNICIAN)
    return _session(_readable(request, session_id))


@router.get("ssh-sessions/{session_id}/cast")
def ssh_session_cast(request, session_id: Path[DbId]):
    """The session's recording, asciicast v2: a JSON header line, then [seconds, "o"|"i"|"r", data] lines."""
    _need(request, Role.TECHNICIAN)
    return cast_response(_readable(request, session_id))


@router.post("ssh-sessions/{session_id}/end", response=SshSessionOut)
def end_ssh_session(request, session_id: Path[DbId]):
    """End an open session, whichever process holds it (admins; audited). Ending one that has ended is a no-op."""
    _need(request, Role.ADMIN)
    session = get_object_or_404(ShellSession, pk=session_id)
    terminal.end_session(session.pk, request.auth)
    return _session(ShellSession.objects.select_related("site", "ended_by").get(pk=session.pk))
