"""HTTP endpoints machines call while they install: the iPXE boot script by MAC, answer files and
installer callbacks by token. No sessions, no CSRF (machines have neither); the token is the key,
and a wrong or expired one gets a 404 with nothing written."""

from __future__ import annotations

import logging
from dataclasses import replace

from django.db import transaction
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from inventory.models import NIC
from inventory.validators import normalise_mac
from provisioner import edge, pxe

from . import callbacks, render
from .models import ACTIVE_STATES, Install, StepKind, StepState

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
MAX_CALLBACK_BODY = 64 * 1024


def _tftp_url(path: str) -> str:
    """Profile paths are relative to the TFTP root; iPXE fetches them from the server that booted it."""
    if "://" in path:
        return path
    return "tftp://${next-server}/" + path.lstrip("/")


def armed_install(mac: str) -> Install | None:
    """The machine's active install, if its per-MAC boot config is in place (written, not yet removed)."""
    nic = NIC.objects.filter(mac=mac, is_pxe=True).first()
    if nic is None:
        return None
    install = Install.objects.filter(machine_id=nic.machine_id, state__in=ACTIVE_STATES).first()
    if install is None:
        return None
    steps = dict(
        install.steps.filter(kind__in=[StepKind.WRITE_BOOT_CONFIG, StepKind.REMOVE_BOOT_CONFIG]).values_list(
            "kind", "state"
        )
    )
    written = steps.get(StepKind.WRITE_BOOT_CONFIG) == StepState.SUCCEEDED
    removed = steps.get(StepKind.REMOVE_BOOT_CONFIG) == StepState.SUCCEEDED
    return install if written and not removed else None


@never_cache
@require_GET
def ipxe_script(request):
    """GET /boot/ipxe?mac=aa:bb:..: the install script for an armed machine; anything else boots its disk."""
    try:
        mac = normalise_mac(request.GET.get("mac", ""))
    except Exception:
        return HttpResponse(pxe.render_ipxe_local(), content_type=TEXT)
    install = armed_install(mac)
    if install is None:
        return HttpResponse(pxe.render_ipxe_local(), content_type=TEXT)
    entry = render.boot_entry(install.plan, render.install_token(install), pxe.Loader.IPXE)
    entry = replace(entry, kernel=_tftp_url(entry.kernel), initrd=_tftp_url(entry.initrd))
    return HttpResponse(pxe.render(entry), content_type=TEXT)


def _install_or_404(token: str) -> Install:
    install = callbacks.install_for_token(token)
    if install is None:
        raise Http404("No active install for this token.")
    return install


@never_cache
@require_GET
def answer_file(request, token: str, name: str):
    """GET /i/<token>/preseed.cfg | ks.cfg | user-data | meta-data."""
    install = _install_or_404(token)
    try:
        body = render.answer_file(install.plan, token, name)
    except KeyError:
        raise Http404(f"A {install.plan['profile']['method']} install does not serve {name}.") from None
    except pxe.TemplateError as exc:
        # The installer gets an error it shows on the console; the install fails with the template's line.
        from . import engine

        with transaction.atomic():
            locked = engine.lock(install.pk)
            engine.fail(
                locked,
                "TemplateError",
                f"The {install.plan['profile']['name']} profile's template cannot be rendered for "
                f"{install.machine.hostname}: {exc}. Fix the profile and start a new install.",
                step=engine.current_step(locked),
            )
        return HttpResponse(f"template error: {exc}\n", status=500, content_type=TEXT)
    return HttpResponse(body, content_type=TEXT)


def _callback_body(request) -> tuple[str, dict]:
    """The message and data of a callback: a JSON object (subiquity's reporter), or form fields and the
    query string (curl and wget in a %post or late_command). The edge has checked the form and query
    already; the JSON is checked as it is loaded."""
    if len(request.body) > MAX_CALLBACK_BODY:
        raise edge.Refusal("body", f"is larger than {MAX_CALLBACK_BODY} bytes", status=413)
    if edge.is_json(request.content_type) and request.body:
        data = edge.load_json_object(request.body, request.content_type)
        message = str(data.get("message") or data.get("description") or data.get("name") or "")
        return message, data
    message = request.POST.get("message", "") or request.GET.get("message", "")
    return message, {k: v for k, v in request.POST.items() if k != "message"}


@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def installer_callback(request, token: str, kind: str):
    """POST (or GET, for installers with only wget) /i/<token>/events/<started|progress|finished|failed>."""
    if kind not in callbacks.INSTALLER_EVENT_KINDS:
        raise Http404(f"Unknown event {kind}.")
    install = _install_or_404(token)
    try:
        message, data = _callback_body(request)
    except edge.Refusal as exc:
        return HttpResponse(f"Refused: {exc.message}.\n", status=exc.status, content_type=TEXT)
    outcome = callbacks.installer_event(install.pk, kind, message[:2000], data)
    return JsonResponse({"ok": True, "outcome": outcome})
