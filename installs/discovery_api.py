"""The discovery API (docs/agent-api.md, Discovery): what the agent of an unknown machine calls.

    POST /api/v1/discovery/register          {"mac", "key", "facts"}          -> {"id", "poll_s"}
    POST /api/v1/discovery/<id>/poll         Authorization: Discovery <key>    -> {"task", "poll_s"}
    POST /api/v1/discovery/<id>/facts        {"task", "facts"}                 -> {"ok": true}
    POST /api/v1/discovery/<id>/done         {"task"[, "error"]}               -> {"ok": true}

No session, no CSRF (machines have neither) and no credential for a registration: each request is checked for
what costs least first, and nothing is parsed or written for one that fails. The source address (REMOTE_ADDR,
which behind nginx daphne takes from the X-Forwarded-For nginx overwrites: docs/design.md) must be in a site's
provisioning networks, that site must discover, the address must be within its rate, the body at most
MAX_BODY_BYTES, read with that limit, then JSON, then the fields. Refusals are problem documents
(core/problems.py) with the protocol's ``reason`` and its ``message`` (the same as ``detail``).

The rate limiter counts in Redis. For registrations it fails closed: with Redis down nothing bounds how fast an
address may register, and discovery is never urgent, so the agent is told 503 and retries with its backoff. For
polls, fact reports and task completions it fails open: those carry a registration's key, a flood of them costs
one indexed read each, and a machine a technician just accepted or discarded must still get its poweroff.
"""

from __future__ import annotations

import ipaddress
import logging
import re

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from audit.context import client_ip
from core import edge, problems, ratelimit
from provisioner.pxe import normalise_mac

from . import discovery, discovery_boot
from .discovery_facts import bounded

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
KEY = re.compile(r"[0-9a-f]{64}")
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# While the limiter cannot count, registrations are asked to come back in about this long.
LIMITER_DOWN_RETRY_S = 10.0


def refuse(status: int, reason: str, message: str, **extra) -> JsonResponse:
    """A refusal in the protocol's words: a problem document with ``reason`` and ``message``."""
    body = problems.problem(status, message, reason=reason)
    body["message"] = message
    body.update(extra)
    headers = {"Retry-After": str(max(1, round(extra["retry_after_s"])))} if "retry_after_s" in extra else None
    return problems.respond(body, headers=headers)


def _refused(exc: discovery.Refused) -> JsonResponse:
    return refuse(exc.status, exc.reason, exc.message, **exc.extra)


def _edge(exc: edge.Refusal) -> JsonResponse:
    body = problems.from_refusal(exc)
    reason = {413: "TooLarge", 415: "InvalidRequest"}.get(exc.status, "InvalidRequest")
    return refuse(exc.status, reason, body["detail"], field=body["field"], errors=body["errors"])


def _source(request) -> str:
    """The caller's address as stored and shown: an IPv4 client of a dual-stack listener as IPv4, without an IPv6
    zone (fe80::1%eth0), which the database's inet type does not take."""
    address = client_ip(request) or ""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    return str(ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped is not None else ip)


def _site(address: str | None):
    """The site of the source address, or the refusal."""
    site = discovery_boot.site_for(address)
    if site is None:
        return None, refuse(
            403,
            "NotProvisioningAddress",
            f"{address} is in no site's provisioning networks: discovery takes registrations only from there. "
            "Check the site's provisioning networks in the admin.",
        )
    return site, None


def register_limit() -> ratelimit.Limit:
    return ratelimit.Limit("discovery-register", settings.DISCOVERY_REGISTER_PER_MIN, 60.0)


def calls_limit() -> ratelimit.Limit:
    return ratelimit.Limit("discovery-calls", settings.DISCOVERY_CALLS_PER_S, 1.0)


def _rate(limit: ratelimit.Limit, address: str, *, fail_open: bool) -> JsonResponse | None:
    try:
        wait = ratelimit.hit(limit, address)
    except ratelimit.Unavailable as exc:
        log.warning("discovery: the rate limiter cannot reach Redis (%s); %s", exc, "let through" if fail_open
                    else "registration refused")  # fmt: skip
        if fail_open:
            return None
        return refuse(
            503,
            "RateLimiterUnavailable",
            "Registrations are paused: the control plane cannot count them just now. This machine will try again.",
            retry_after_s=LIMITER_DOWN_RETRY_S,
        )
    if wait:
        message = f"Too many requests from {address}; wait {wait:.1f} s."
        return refuse(429, "TooManyRequests", message, retry_after_s=wait)
    return None


def _body(request) -> dict:
    """The JSON object of the body, read no further than MAX_BODY_BYTES; edge.Refusal otherwise."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        raise edge.Refusal("body", f"is larger than {MAX_BODY_BYTES} bytes", status=413)
    data = request.read(MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise edge.Refusal("body", f"is larger than {MAX_BODY_BYTES} bytes", status=413)
    if not data:
        raise edge.Refusal("body", "is empty: send a JSON object")
    return edge.load_json_object(data, request.content_type)


def _register_fields(body: dict) -> tuple[str, str, dict]:
    mac, key = body.get("mac"), body.get("key")
    if not isinstance(mac, str):
        raise edge.Refusal("mac", "is required: the booting NIC's MAC, from BOOTIF")
    try:
        mac = normalise_mac(mac)
    except ValueError as exc:
        raise edge.Refusal("mac", str(exc)) from None
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise edge.Refusal("key", "must be 64 lower-case hex characters")
    return mac, key, bounded(body.get("facts"), "facts")


@csrf_exempt
@never_cache
@require_POST
def register(request):
    address = _source(request)
    site, refusal = _site(address)
    if refusal is not None:
        return refusal
    if not site.discovery:
        return refuse(
            403,
            "DiscoveryOff",
            f"{site.name} does not discover unknown machines (switch it on in the site's settings). This machine "
            "should boot its disk.",
        )
    if refusal := _rate(register_limit(), address, fail_open=False):
        return refusal
    try:
        mac, key, facts = _register_fields(_body(request))
    except edge.Refusal as exc:
        return _edge(exc)
    try:
        row = discovery.register(site, address, mac, key, facts)
    except discovery.Refused as exc:
        return _refused(exc)
    return JsonResponse({"id": row.pk, "poll_s": settings.DISCOVERY_POLL_S})


def _caller(request, pk: str):
    """The registration the call is for, by its key, after the address and rate checks; or the refusal."""
    address = _source(request)
    _, refusal = _site(address)
    if refusal is None:
        refusal = _rate(calls_limit(), address, fail_open=True)
    if refusal is not None:
        return None, refusal
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    try:
        number = edge.int_param(pk)
        if scheme != "Discovery" or number is None or not KEY.fullmatch(key.strip()):
            raise discovery.Refused(401, "Unauthorized", "Send Authorization: Discovery <the registration's key>.")
        return discovery.authenticate(number, key.strip()), None
    except discovery.Refused as exc:
        return None, _refused(exc)


def _task_id(body: dict) -> str:
    task = body.get("task")
    if not isinstance(task, str) or not TASK_ID.fullmatch(task):
        raise edge.Refusal("task", "must be the id of the task the poll handed out")
    return task


@csrf_exempt
@never_cache
@require_POST
def poll(request, pk: str):
    row, refusal = _caller(request, pk)
    if refusal is not None:
        return refusal
    try:
        return JsonResponse(discovery.poll(row))
    except discovery.Refused as exc:
        return _refused(exc)


@csrf_exempt
@never_cache
@require_POST
def facts(request, pk: str):
    row, refusal = _caller(request, pk)
    if refusal is not None:
        return refusal
    try:
        body = _body(request)
        task, reported = _task_id(body), bounded(body.get("facts"), "facts")
    except edge.Refusal as exc:
        return _edge(exc)
    try:
        discovery.report_facts(row.pk, task, reported)
    except discovery.Refused as exc:
        return _refused(exc)
    return JsonResponse({"ok": True})


@csrf_exempt
@never_cache
@require_POST
def done(request, pk: str):
    row, refusal = _caller(request, pk)
    if refusal is not None:
        return refusal
    try:
        body = _body(request)
        task, error = _task_id(body), body.get("error") or ""
        if not isinstance(error, str) or not re.fullmatch(r"([A-Z][A-Za-z0-9]{0,63})?", error):
            raise edge.Refusal("error", "must be a CamelCase reason such as UnknownTaskKind")
    except edge.Refusal as exc:
        return _edge(exc)
    try:
        discovery.task_done(row.pk, task, error)
    except discovery.Refused as exc:
        return _refused(exc)
    return JsonResponse({"ok": True})
