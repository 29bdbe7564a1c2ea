"""Every page, action and API endpoint of the UI × every role: allowed, or refused (403; anonymous
gets the login page, or 401 from the API), and nothing in between."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from tests.integration.ui.conftest import ROLES

pytestmark = pytest.mark.django_db

LEVEL = {"anonymous": 0, "norole": 0, "viewer": 1, "technician": 2, "admin": 3}
NEED = {"viewer": 1, "technician": 2, "admin": 3}


def endpoints(s):
    """(name, method, url, data, needed role). Data chosen so an allowed write is refused by the service
    or harmless: the matrix is about who gets through, not about what the action does."""
    m, i, idle = s.idle.hostname, s.running.pk, s.idle.pk
    pages = [
        ("dashboard", "get", reverse("home"), None, "viewer"),
        ("dashboard partial", "get", reverse("home") + "?partial=1", None, "viewer"),
        ("machine list", "get", reverse("inventory:machine-list"), None, "viewer"),
        ("machine rows", "get", reverse("inventory:machine-list") + "?partial=rows", None, "viewer"),
        ("machine csv", "get", reverse("inventory:machine-export"), None, "viewer"),
        ("machine page", "get", reverse("inventory:machine-detail", args=[m]), None, "viewer"),
        (
            "preview",
            "get",
            reverse("inventory:machine-preview", args=[m, s.profile.name, "pxelinux"]),
            None,
            "technician",
        ),
        ("racks", "get", reverse("inventory:rack-list"), None, "viewer"),
        ("command form", "get", reverse("access:ssh-run"), None, "technician"),
        (
            "run command",
            "post",
            reverse("access:ssh-run"),
            {"machines": "", "command": "", "timeout_s": 1},
            "technician",
        ),
        ("rack", "get", reverse("inventory:rack-detail", args=[s.rack.pk]), None, "viewer"),
        ("installs", "get", reverse("install-list"), None, "viewer"),
        ("install page", "get", reverse("install-detail", args=[i]), None, "viewer"),
        ("install log", "get", reverse("install-log", args=[i]), None, "viewer"),
        ("audit log", "get", reverse("audit:log"), None, "viewer"),
        ("audit export", "get", reverse("audit:export"), None, "viewer"),
        ("tokens", "get", reverse("accounts:token-list"), None, "viewer"),
        ("token create", "post", reverse("accounts:token-list"), {"name": "t"}, "viewer"),
        ("token revoke", "post", reverse("accounts:token-revoke", args=[999999]), {}, "viewer"),
        ("bulk action", "post", reverse("inventory:machine-action"), {"action": "on", "machine": idle}, "technician"),
        ("protect", "post", reverse("inventory:machine-protect", args=[m]), {"protected": "1"}, "technician"),
        (
            "unprotect",
            "post",
            reverse("inventory:machine-protect", args=[m]),
            {"protected": "0", "reason": "x"},
            "admin",
        ),
        ("ping", "post", reverse("inventory:machine-ping", args=[m]), {}, "technician"),
        ("cancel", "post", reverse("install-cancel", args=[s.failed.pk]), {}, "technician"),
        ("retry", "post", reverse("install-retry", args=[i]), {}, "technician"),
        ("batch pause", "post", reverse("batch-action", args=[s.batch.pk, "pause"]), {}, "technician"),
        ("alert ack", "post", reverse("alert-acknowledge", args=[s.alert.pk]), {}, "technician"),
        ("admin", "get", "/admin/", None, "admin"),
        ("admin machines", "get", "/admin/inventory/machine/", None, "admin"),
    ]
    start = {"machines": [s.busy.hostname], "profile": s.profile.name}
    api = [
        ("api openapi", "get", "/api/v1/openapi.json", None, "viewer"),
        ("api machines", "get", "/api/v1/machines", None, "viewer"),
        ("api machine", "get", f"/api/v1/machines/{m}", None, "viewer"),
        ("api installs", "get", "/api/v1/installs", None, "viewer"),
        ("api install", "get", f"/api/v1/installs/{i}", None, "viewer"),
        ("api events", "get", f"/api/v1/installs/{i}/events?after=0", None, "viewer"),
        ("api batch", "get", f"/api/v1/batches/{s.batch.pk}", None, "viewer"),
        ("api start", "post", "/api/v1/installs", start, "technician"),
        ("api batch start", "post", "/api/v1/batches", start, "technician"),
        ("api cancel", "post", f"/api/v1/installs/{s.failed.pk}/cancel", {}, "technician"),
        ("api retry", "post", f"/api/v1/installs/{i}/retry", {}, "technician"),
        ("api pause", "post", f"/api/v1/batches/{s.batch.pk}/pause", {}, "technician"),
        ("api resume", "post", f"/api/v1/batches/{s.batch.pk}/resume", {}, "technician"),
    ]
    return pages, api


def _client(role, users):
    client = Client()
    if role != "anonymous":
        client.force_login(users[role])
    return client


def _call(client, method, url, data, api):
    if method == "get":
        return client.get(url)
    if api:
        return client.post(url, json.dumps(data), content_type="application/json")
    return client.post(url, data)


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(role, users, scene):
    pages, api = endpoints(scene)
    client = _client(role, users)
    failures = []
    for name, method, url, data, need in pages + api:
        is_api = url.startswith("/api/") and "openapi" not in url
        response = _call(client, method, url, data, is_api)
        allowed = LEVEL[role] >= NEED[need]
        status = response.status_code
        location = response.get("Location", "")
        if allowed:
            ok = status < 400 or status in (400, 404, 409)
            ok = ok and not (status == 302 and "login" in location)
            ok = ok and status != 403
        elif role == "anonymous":
            ok = (status == 302 and "login" in location) or (is_api and status == 401)
        elif url.startswith("/admin/"):
            # Django's admin sends a signed-in user without the admin role to its own login page
            ok = status == 302 and "/admin/login/" in location
        else:
            ok = status == 403
        if not ok:
            failures.append(f"{name} {method} {url}: {status} {location} (role {role}, needs {need})")
    assert not failures, "\n".join(failures)
