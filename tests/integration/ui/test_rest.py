"""The automation API: per-user tokens (stored hashed), the same roles as the pages, session writes
that need CSRF, and the same service functions (and audit rows) as the pages."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from audit.models import AuditEntry
from audit.service import Actor
from installs.models import Batch, BatchState, Event, EventKind, Install
from provisioner.accounts.api_tokens import ApiToken, create_token, hash_key
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db


def token_client(role: str) -> tuple[Client, str]:
    user = user_with_role(role, f"{role}-api")
    _, key = create_token(user, "test", actor=Actor.system("test"))
    return Client(HTTP_AUTHORIZATION=f"Token {key}"), key


def post(client, url, body=None):
    return client.post(url, json.dumps(body or {}), content_type="application/json")


def test_token_is_stored_hashed_and_shown_once(scene):
    user = user_with_role("viewer", "alice")
    client = Client()
    client.force_login(user)
    html = client.post("/account/tokens/", {"name": "ansible"}).content.decode()
    token = ApiToken.objects.get(user=user)
    key = html.split("data-new-key>")[1].split("<")[0]
    assert key.startswith("prv_") and token.key_hash == hash_key(key)
    assert key not in json.dumps(list(ApiToken.objects.values()), default=str)
    assert key not in client.get("/account/tokens/").content.decode()
    assert AuditEntry.objects.filter(action="api_token.create", actor_label="alice").exists()


def test_manage_py_api_token_prints_a_working_key(scene):
    user_with_role("technician", "robot")
    out = io.StringIO()
    call_command("api_token", "robot", "--name", "ci", stdout=out)
    key = out.getvalue().strip()
    response = Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/machines")
    assert response.status_code == 200
    assert response.json()["count"] == 2


def test_bad_or_missing_token_is_401_and_revoked_token_stops_working(scene):
    assert Client().get("/api/v1/machines").status_code == 401
    assert Client(HTTP_AUTHORIZATION="Token prv_nonsense").get("/api/v1/machines").status_code == 401
    client, key = token_client("viewer")
    assert client.get("/api/v1/machines").status_code == 200
    ApiToken.objects.filter(key_hash=hash_key(key)).delete()
    assert client.get("/api/v1/machines").status_code == 401


def test_a_token_of_a_user_without_a_role_reads_nothing(scene):
    client, _ = token_client("norole")
    assert client.get("/api/v1/machines").status_code == 403


def test_viewer_token_reads_but_cannot_start(scene):
    client, _ = token_client("viewer")
    assert client.get(f"/api/v1/installs/{scene.running.pk}").status_code == 200
    response = post(client, "/api/v1/installs", {"machines": [scene.idle.hostname], "profile": scene.profile.name})
    assert response.status_code == 403
    assert not Install.objects.filter(machine=scene.idle).exclude(pk=scene.failed.pk).exists()


def test_technician_starts_cancels_and_the_audit_names_them(scene):
    client, _ = token_client("technician")
    response = post(client, "/api/v1/installs", {"machines": [scene.idle.hostname], "profile": scene.profile.name})
    assert response.status_code == 201, response.content
    (install,) = response.json()
    assert install["machine"] == "idle-01" and install["state"] == "queued"
    assert "plan" not in install and "token_nonce" not in install
    entry = AuditEntry.objects.get(action="install.request", object_id=str(install["id"]))
    assert entry.actor_label == "technician-api"
    response = post(client, f"/api/v1/installs/{install['id']}/cancel", {"why": "wrong rack"})
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert response.json()["failure_message"].endswith("wrong rack")


def test_refusals_come_back_as_409_with_the_reasons(scene):
    client, _ = token_client("technician")
    response = post(client, "/api/v1/installs", {"machines": [scene.busy.hostname], "profile": scene.profile.name})
    assert response.status_code == 409
    assert "busy-01 is already being installed" in response.json()["problems"][0]
    assert post(client, "/api/v1/installs", {"machines": ["nope"], "profile": scene.profile.name}).status_code == 404


def test_batches_pause_resume_cancel(scene):
    client, _ = token_client("technician")
    response = post(client, "/api/v1/batches", {"machines": [scene.idle.hostname], "profile": scene.profile.name})
    assert response.status_code == 201
    batch = response.json()["id"]
    assert post(client, f"/api/v1/batches/{batch}/pause", {"why": "lunch"}).json()["state"] == "paused"
    assert post(client, f"/api/v1/batches/{batch}/resume").json()["state"] in ("running", "finished")
    assert post(client, f"/api/v1/batches/{batch}/cancel").json()["state"] == BatchState.CANCELLED
    assert Batch.objects.get(pk=batch).state == BatchState.CANCELLED
    assert post(client, f"/api/v1/batches/{batch}/pause").status_code == 409


def test_events_after_an_id(scene):
    client, _ = token_client("viewer")
    ids = [Event.objects.create(install=scene.running, kind=EventKind.LOG, message=f"m{n}").pk for n in range(3)]
    events = client.get(f"/api/v1/installs/{scene.running.pk}/events", {"after": ids[0]}).json()
    assert [e["id"] for e in events][-2:] == ids[1:]
    assert all(e["id"] > ids[0] for e in events)


def test_machine_list_uses_the_page_filters(scene):
    client, _ = token_client("viewer")
    data = client.get("/api/v1/machines", {"vendor": "Dell"}).json()
    assert [m["hostname"] for m in data["results"]] == ["busy-01"]
    assert data["results"][0]["last_install_state"] == "installing"
    detail = client.get(f"/api/v1/machines/{scene.busy.hostname}").json()
    assert detail["bmc"]["address"] == "10.0.0.11"
    assert "password" not in json.dumps(detail)


def test_session_writes_need_csrf(scene):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with_role("technician", "browser-tech"))
    body = {"machines": [scene.idle.hostname], "profile": scene.profile.name}
    response = client.post("/api/v1/installs", json.dumps(body), content_type="application/json")
    assert response.status_code == 403
    assert client.get("/api/v1/machines").status_code == 200  # reads need no token
    client.get("/account/tokens/")  # sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    response = client.post("/api/v1/installs", json.dumps(body), content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201, response.content


def test_openapi_document_is_served_without_the_cdn_docs_page(scene):
    client = Client()
    client.force_login(user_with_role("viewer", "reader"))
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/installs/{install_id}/events" in spec["paths"]
    assert client.get("/api/v1/docs").status_code == 404
