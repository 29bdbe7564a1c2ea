"""HTTP endpoints machines call while they install: the iPXE boot script by MAC, answer files by the
boot credential (spent by the fetch of the file that carries the callback token) and installer callbacks
by the callback token. No sessions, no CSRF (machines have neither); the token is the key, a wrong or
expired one gets a 404 with nothing written, and a spent boot credential a 403 that fails the install.

The callbacks answer in JSON, and refuse as problem details (core/problems.py). The iPXE script and the
answer files are read by firmware and installers, which show no body: their errors are a line of
text/plain, for the person who fetches the URL with curl."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace

from django.http import (
    FileResponse,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseNotFound,
    JsonResponse,
)
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_safe

from audit.context import client_ip
from core import edge, problems
from core.text import a
from inventory.models import NIC
from inventory.validators import normalise_mac
from provisioner import pxe

from . import callbacks, credentials, discovery_boot, media, render
from .models import ACTIVE_STATES, Install, StepKind, StepState

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
ISO = "application/x-iso9660-image"
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
    """GET /boot/ipxe?mac=aa:bb:..: the install script for an armed machine; a MAC unknown to inventory at a site
    that discovers, the memory OS in discovery mode; anything else boots its disk."""
    try:
        mac = normalise_mac(request.GET.get("mac", ""))
    except Exception:
        return HttpResponse(pxe.render_ipxe_local(), content_type=TEXT)
    install = armed_install(mac)
    if install is None:
        # Unknown to inventory, from the provisioning network of a site that discovers: the memory OS registers it.
        boot = discovery_boot.ipxe_boot(mac, client_ip(request))
        if boot is None:
            return HttpResponse(pxe.render_ipxe_local(), content_type=TEXT)
        boot = replace(boot, kernel=_tftp_url(boot.kernel), initrd=_tftp_url(boot.initrd))
        return HttpResponse(pxe.render_ipxe_discover(boot), content_type=TEXT)
    entry = render.boot_entry(install.plan, render.boot_token(install), pxe.Loader.IPXE)
    entry = replace(entry, kernel=_tftp_url(entry.kernel), initrd=_tftp_url(entry.initrd))
    return HttpResponse(pxe.render(entry), content_type=TEXT)


@never_cache
@require_GET
def answer_file(request, token: str, name: str):
    """GET /i/<boot credential>/preseed.cfg | ks.cfg | user-data | meta-data."""
    install = credentials.boot_install(token)
    if install is None:
        return HttpResponseNotFound("No active install for this token.\n", content_type=TEXT)
    if not render.serves(install.plan, name):
        method = install.plan.profile.method
        return HttpResponseNotFound(f"{a(method, capital=True)} install does not serve {name}.\n", content_type=TEXT)
    answer = credentials.answer_file(install.pk, name)
    if isinstance(answer, credentials.BootCredentialReused):
        return HttpResponseForbidden(f"{answer}\n", content_type=TEXT)
    return HttpResponse(answer.body, status=answer.status, content_type=TEXT)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _nonce_of_active(pk: int) -> str | None:
    return Install.objects.filter(pk=pk, state__in=ACTIVE_STATES).values_list("token_nonce", flat=True).first()


@never_cache
@require_safe
def media_iso(request, name: str):
    """GET or HEAD /boot/media/<install id>-<name>.iso: an active install's virtual media ISO, for its BMC.

    BMCs read an attached ISO in pieces as the machine asks for blocks (iDRAC, iLO and XCC send Range requests),
    so a single byte range is answered with 206; anything else gets the whole file."""
    install_id = media.install_id_for(name, _nonce_of_active)
    if install_id is None:
        return HttpResponseNotFound("No active install has this ISO.\n", content_type=TEXT)
    install = Install.objects.get(pk=install_id)
    try:
        handle = media.iso_path(install).open("rb")
    except (OSError, ValueError):
        return HttpResponseNotFound("The ISO is not built (yet, or any more).\n", content_type=TEXT)
    size = os.fstat(handle.fileno()).st_size
    match = _RANGE.match(request.headers.get("Range", ""))
    if match and (match[1] or match[2]):
        if match[1]:
            start, end = int(match[1]), min(int(match[2]) if match[2] else size - 1, size - 1)
        else:  # bytes=-N: the last N bytes
            start, end = max(0, size - int(match[2])), size - 1
        if start > end or start >= size:
            handle.close()
            response = HttpResponse(status=416, content_type=TEXT)
            response["Content-Range"] = f"bytes */{size}"
            return response
        handle.seek(start)
        response = FileResponse(_limited(handle, end - start + 1), status=206, content_type=ISO)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    else:
        response = FileResponse(handle, content_type=ISO)
        response["Content-Length"] = str(size)
    response["Accept-Ranges"] = "bytes"
    if request.method == "HEAD":
        response.close()
        return HttpResponse(status=response.status_code, headers=dict(response.headers))
    return response


def _limited(handle, length: int, block: int = 1 << 20):
    try:
        while length > 0:
            chunk = handle.read(min(block, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()


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
    """POST (or GET, for installers with only wget) /i/<callback token>/events/<started|progress|finished|failed>."""
    if kind not in callbacks.INSTALLER_EVENT_KINDS:
        return problems.response(404, f"Unknown event {kind}: expected {', '.join(callbacks.INSTALLER_EVENT_KINDS)}.")
    install = credentials.callback_install(token)
    if install is None:
        return problems.response(404, "No active install for this token.")
    try:
        message, data = _callback_body(request)
    except edge.Refusal as exc:
        return problems.respond(problems.from_refusal(exc))
    outcome = callbacks.installer_event(install.pk, kind, message[:2000], data)
    return JsonResponse({"ok": True, "outcome": outcome})
