"""The serial console page, its recordings' replay page and download (serialconsole/).

Technicians only, replays included: a recording holds what was typed ("i" events), and people type passwords
at login prompts.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from accounts.roles import Role, has_role, require_role
from core import recordings
from inventory.models import BMC, Machine
from provisioner.bmc import Capability, registry
from serialconsole.models import ConsoleSession
from serialconsole.recording import read_cast

MACHINE_PAGE_SESSIONS = 5


def _with_xterm_policy(response):
    # xterm.js sizes and colours its rows through <style> elements it creates at run time, which style-src
    # 'self' blocks: these two pages allow inline styles (config/security.py). Scripts stay 'self' only.
    response.csp_inline_styles = True
    return response


def _bmc(machine):
    try:
        return machine.bmc
    except BMC.DoesNotExist:
        return None


def machine_panel(machine, bmc, user) -> dict:
    """What the machine page shows about the console: can it be opened, and the last sessions."""
    if not has_role(user, Role.TECHNICIAN):
        return {}
    capable = bmc is not None and Capability.CONSOLE in registry.capabilities(bmc.driver)
    refusal = ""
    if bmc is None:
        refusal = "No BMC configured."
    elif not capable:
        refusal = registry.refusal(bmc.driver, Capability.CONSOLE, machine.hostname)
    sessions = list(ConsoleSession.objects.filter(machine=machine)[:MACHINE_PAGE_SESSIONS])
    return {"capable": capable, "refusal": refusal, "sessions": sessions}


@require_GET
@require_role(Role.TECHNICIAN)
def console_page(request, hostname: str):
    machine = get_object_or_404(Machine.objects.select_related("bmc"), hostname=hostname)
    panel = machine_panel(machine, _bmc(machine), request.user)
    response = render(request, "serialconsole/console.html", {"machine": machine, **panel})
    return _with_xterm_policy(response)


@require_GET
@require_role(Role.TECHNICIAN)
def replay_page(request, session_id: int):
    session = get_object_or_404(ConsoleSession.objects.select_related("opened_by"), pk=session_id)
    problem = ""
    if not session.cast_path.exists():
        problem = "This session has no recording (it never connected, or its file was removed)."
    else:
        try:
            read_cast(session.cast_path)
        except (OSError, ValueError) as exc:
            problem = f"The recording cannot be read: {exc}"
    response = render(request, "serialconsole/replay.html", {"session": session, "problem": problem})
    return _with_xterm_policy(response)


@require_GET
@require_role(Role.TECHNICIAN)
def cast_download(request, session_id: int):
    session = get_object_or_404(ConsoleSession, pk=session_id)
    return recordings.cast_download(session.cast_path, f"{session.hostname}-console-{session.pk}.cast")
