"""The automation API: per-user tokens (stored hashed), the same roles as the pages, session writes
that need CSRF, and the same service functions (and audit rows) as the pages."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.api_tokens import ApiToken, create_token, hash_key
from audit.models import AuditEntry
from audit.service import Actor
from core import problems
from installs.models import Batch, BatchState, Event, EventKind, Install, Script, Workflow
from inventory.models import BMC, NIC, Machine, OSProfile, Rack, Site
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
    (install,) = response.json()["results"]
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
    page = client.get(f"/api/v1/installs/{scene.running.pk}/events", {"after": ids[0]}).json()
    events = page["results"]
    assert page["count"] == len(events) >= 2
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


HUGE = "203708920034997109101105237721088"


def is_problem(response, status: int, field: str | None = None) -> bool:
    """The one error shape (RFC 9457 problem details): a sentence in ``detail``; the parameter at fault in ``field``."""
    body = response.json()
    ok = response.status_code == status == body.get("status") and isinstance(body.get("detail"), str) and body["detail"]
    ok = ok and response["Content-Type"] == problems.MEDIA_TYPE and body["title"] and body["type"] == "about:blank"
    return bool(ok and (field is None or body.get("field") == field))


def writes():
    """What a refused request must leave as it was."""
    return (
        Install.objects.count(),
        Batch.objects.count(),
        AuditEntry.objects.count(),
        Event.objects.count(),
        Workflow.objects.count(),
        Script.objects.count(),
        sorted(Install.objects.values_list("pk", "state")),
        sorted(Batch.objects.values_list("pk", "state")),
        [sorted(map(str, model.objects.values_list())) for model in (Site, Rack, Machine, NIC, BMC, OSProfile)],
    )


@pytest.mark.parametrize(
    "url, field",
    [
        ("/api/v1/machines?q=%00", "q"),
        ("/api/v1/machines?vendor=x%00", "vendor"),
        (f"/api/v1/machines?page={HUGE}", "page"),
        ("/api/v1/machines?page=0", "page"),
        ("/api/v1/installs?machine=%00", "machine"),
        (f"/api/v1/installs?page={HUGE}", "page"),
        (f"/api/v1/installs?batch={HUGE}", "batch"),
        ("/api/v1/installs?state=%00", "state"),
        (f"/api/v1/installs/{HUGE}", "install_id"),
        (f"/api/v1/installs/1/events?after={HUGE}", "after"),
        (f"/api/v1/batches/{HUGE}", "batch_id"),
        ("/api/v1/machines/busy%00-01", "hostname"),
    ],
)
def test_nul_and_numbers_past_a_bigint_in_a_request_are_400_naming_the_parameter(scene, url, field):
    client, _ = token_client("viewer")
    client.raise_request_exception = False
    response = client.get(url)
    assert is_problem(response, 400, field), (response.status_code, response.content[:400])


@pytest.mark.parametrize("body", ["[1, 2, 3]", '"text"', "1", "null", "[" * 5000 + "]" * 5000, "{"])
def test_a_body_that_is_not_one_json_object_is_400_and_writes_nothing(scene, body):
    client, _ = token_client("technician")
    client.raise_request_exception = False
    before = writes()
    for url in (
        f"/api/v1/installs/{scene.running.pk}/cancel",
        f"/api/v1/batches/{scene.batch.pk}/pause",
        "/api/v1/installs",
        "/api/v1/batches",
    ):
        response = client.post(url, body, content_type="application/json")
        assert is_problem(response, 400, "body"), (url, response.status_code, response.content[:400])
    assert writes() == before


def test_a_json_body_sent_as_another_type_is_415_and_writes_nothing(scene):
    client, _ = token_client("technician")
    before = writes()
    body = json.dumps({"machines": [scene.idle.hostname], "profile": scene.profile.name})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = client.post("/api/v1/installs", body, content_type=content_type)
        assert is_problem(response, 415, "body"), (content_type, response.status_code, response.content[:400])
    response = client.post(f"/api/v1/installs/{scene.running.pk}/cancel", '{"why": "x"}', content_type="text/plain")
    assert is_problem(response, 415, "body")
    assert writes() == before
    # No body at all is still fine where the body is optional.
    assert client.post(f"/api/v1/batches/{scene.batch.pk}/pause", b"", content_type="").json()["state"] == "paused"


@pytest.mark.parametrize(
    "url, body, field",
    [
        ("/api/v1/installs", {"machines": ["idle\u0000-01"], "profile": "debian-12-preseed"}, "machines.0"),
        ("/api/v1/installs", {"machines": ["idle-01"], "profile": "debian-12-preseed", "name": "\ud800"}, "name"),
        ("/api/v1/installs", {"machines": ["idle-01"], "profile": "debian-12-preseed", "max_per_site": 2**63}, None),
        ("/api/v1/batches", {"machines": ["idle-01"], "profile": "debian-12-preseed", "stagger_s": 1e400}, None),
        ("cancel", {"why": "lunch\u0000"}, "why"),
        ("pause", {"why": "\u0000"}, "why"),
    ],
)
def test_a_body_field_that_cannot_be_stored_is_refused_before_any_write(scene, url, body, field):
    client, _ = token_client("technician")
    client.raise_request_exception = False
    url = {
        "cancel": f"/api/v1/installs/{scene.running.pk}/cancel",
        "pause": f"/api/v1/batches/{scene.batch.pk}/pause",
    }.get(url, url)
    before = writes()
    response = client.post(url, json.dumps(body), content_type="application/json")
    assert is_problem(response, 400, field), (
        response.status_code,
        response.content[:400],
    )
    assert writes() == before


def test_every_refusal_has_the_one_error_shape(scene):
    anonymous = Client()
    assert is_problem(anonymous.get("/api/v1/machines"), 401)
    viewer, _ = token_client("viewer")
    assert is_problem(viewer.get("/api/v1/machines/nope"), 404)
    assert is_problem(post(viewer, "/api/v1/installs", {"machines": ["idle-01"], "profile": "x"}), 403)
    assert is_problem(viewer.get("/api/v1/machines?per_page=5000"), 400, "per_page")
    technician, _ = token_client("technician")
    busy = post(technician, "/api/v1/installs", {"machines": [scene.busy.hostname], "profile": scene.profile.name})
    assert is_problem(busy, 409) and busy.json()["problems"]
    missing = post(technician, "/api/v1/installs", {"profile": scene.profile.name})
    assert is_problem(missing, 400, "machines")
    assert missing.json()["errors"][0]["loc"] == ["body", "body", "machines"]


def test_openapi_document_is_readable_with_an_api_token_and_documents_refusals(scene):
    client, _ = token_client("viewer")
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200, response.content[:300]
    spec = response.json()
    assert Client().get("/api/v1/openapi.json").status_code == 302  # a person: to the login page
    assert is_problem(Client(HTTP_AUTHORIZATION="Token prv_nonsense").get("/api/v1/openapi.json"), 401)
    norole, _ = token_client("norole")
    assert is_problem(norole.get("/api/v1/openapi.json"), 403)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert {"400", "401"} <= operation["responses"].keys(), (method, path)
            if operation.get("requestBody"):
                assert {"400", "415"} <= operation["responses"].keys(), (method, path)
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "field", "errors", "problems"} <= problem["properties"].keys()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert set(answer["content"]) == {problems.MEDIA_TYPE}, (method, path, status)
    query = {p["name"]: p["schema"] for p in spec["paths"]["/api/v1/machines"]["get"]["parameters"]}
    assert query["page"]["maximum"] < 2**63 and "\\x00" in query["q"]["pattern"]
