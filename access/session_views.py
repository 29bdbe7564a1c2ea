"""The SSH terminal's pages: the terminal itself, the sessions (open now, and the recordings), a session's
replay and its recording, and an admin's "end it" (access/consumers.py carries the terminal itself).

Technicians see their own sessions, admins all, viewers none (access/shell_sessions.py).
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import Role, has_role, require_role
from core.recordings import cast_download
from inventory.models import Machine, MachineStatus

from . import terminal
from .models import SessionPolicy, ShellSession
from .shell_sessions import SessionFilters, may_read, recording_problem, visible_to

PAGE_SIZE = 50
MACHINE_PAGE_SESSIONS = 5


def _with_xterm_policy(response):
    # xterm.js sizes and colours its rows through <style> elements it creates at run time (config/security.py).
    response.csp_inline_styles = True
    return response


def terminal_panel(machine: Machine, user) -> dict:
    """What the machine page shows about SSH sessions: may this user open one here, must they give a reason,
    and the last sessions they may replay."""
    if not has_role(user, Role.TECHNICIAN):
        return {}
    site = machine.rack.site if machine.rack_id else None
    policy = SessionPolicy.for_site(site) if site is not None else None
    refusal = ""
    if site is None:
        refusal = "The machine is in no rack, so no site's jump host reaches it."
    elif machine.status != MachineStatus.DEPLOYED:
        refusal = f"A terminal opens on a deployed machine; {machine.hostname} is {machine.status}."
    elif not has_role(user, Role[policy.min_role.upper()]):
        refusal = f"Site {site.slug} allows terminals from the {policy.min_role} role up."
    return {
        "offered": not refusal,
        "refusal": refusal,
        "reason_needed": bool(policy and machine.protected and policy.reason_required_protected),
        "sessions": list(visible_to(user).filter(machine=machine)[:MACHINE_PAGE_SESSIONS]),
    }


@require_GET
@require_role(Role.TECHNICIAN)
def terminal_page(request, hostname: str):
    machine = get_object_or_404(Machine.objects.select_related("rack__site"), hostname=hostname)
    panel = terminal_panel(machine, request.user)
    return _with_xterm_policy(render(request, "access/terminal.html", {"machine": machine, **panel}))


@require_GET
@require_role(Role.TECHNICIAN)
def session_list(request):
    filters = SessionFilters.from_params(request.GET)
    mine = visible_to(request.user)
    page = Paginator(filters.apply(mine.filter(ended_at__isnull=False)).defer("transcript"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "access/shellsession_list.html",
        {
            "open_now": list(mine.filter(ended_at__isnull=True).defer("transcript")),
            "page": page,
            "filters": filters.as_dict(),
            "querystring": query.urlencode(),
            "is_admin": has_role(request.user, Role.ADMIN),
        },
    )


def _readable(request, session_id: int) -> ShellSession:
    session = get_object_or_404(ShellSession.objects.select_related("machine", "site", "ended_by"), pk=session_id)
    if not may_read(request.user, session):
        raise PermissionDenied("Only an admin may see another person's session.")
    return session


@require_GET
@require_role(Role.TECHNICIAN)
def session_detail(request, session_id: int):
    session = _readable(request, session_id)
    response = render(
        request,
        "access/shellsession_detail.html",
        {"session": session, "problem": recording_problem(session), "is_admin": has_role(request.user, Role.ADMIN)},
    )
    # asciinema-player compiles its WebAssembly terminal and styles its rows inline (config/security.py).
    response.csp_wasm = True
    return response


def cast_response(session: ShellSession) -> FileResponse:
    """The session's recording as a download (the page's player and the API fetch it the same way)."""
    return cast_download(session.cast_path, f"{session.hostname}-ssh-{session.pk}.cast")


@require_GET
@require_role(Role.TECHNICIAN)
def session_cast(request, session_id: int):
    return cast_response(_readable(request, session_id))


@require_GET
@require_role(Role.ADMIN)
def session_watch(request, session_id: int):
    session = get_object_or_404(ShellSession, pk=session_id)
    return _with_xterm_policy(render(request, "access/watch.html", {"session": session}))


@require_POST
@require_role(Role.ADMIN)
def session_end(request, session_id: int):
    session = get_object_or_404(ShellSession, pk=session_id)
    if session.active:
        terminal.end_session(session.pk, request.user)
        messages.success(request, f"Session {session.pk} on {session.hostname} ({session.opened_by_label}) is ending.")
    else:
        messages.info(request, f"Session {session.pk} had already ended.")
    return redirect("ssh-sessions")
