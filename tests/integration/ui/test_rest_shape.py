"""The REST API's shape: every list answers in the one envelope, the install list takes the page's filters
with the same meanings, a trailing slash answers as the path without it (a POST's body too), and the
interactive documentation is served from our own files to a viewer's session."""

from __future__ import annotations

import re
import secrets

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEntry
from console.rest import api
from installs.models import Batch, BatchState, Install, InstallState
from installs.plan import build_plan
from tests.conftest import make_bmc, make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role
from tests.integration.ui.test_rest import is_problem, post, token_client

pytestmark = pytest.mark.django_db

ENVELOPE = {"count", "page", "per_page", "results"}


def _list_operations() -> list[tuple[str, dict]]:
    """Every GET whose answer is a list of things, found in the OpenAPI document: its 200 is an array, or an
    object with ``results``."""
    spec = api.get_openapi_schema()
    found = []
    for path, operations in spec["paths"].items():
        responses = operations.get("get", {}).get("responses", {})
        answer = responses.get(200) or responses.get("200") or {}
        schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
        ref = schema.get("$ref", "")
        body = spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema
        fields = body.get("properties", {})
        if body.get("type") == "array" or ("results" in fields and "id" not in fields):  # not one thing's results
            found.append((path, body))
    return found


def test_no_list_in_the_document_is_a_bare_array_and_every_one_is_the_envelope():
    lists = _list_operations()
    paths = {path for path, _ in lists}
    assert {"/api/v1/installs", "/api/v1/batches", "/api/v1/drivers", "/api/v1/workflows", "/api/v1/scripts",
            "/api/v1/installs/{install_id}/events", "/api/v1/machines/{hostname}/console-sessions",
            "/api/v1/machines/{hostname}/facts", "/api/v1/machines", "/api/v1/discovered",
            "/api/v1/ssh-sessions"} <= paths  # fmt: skip
    for path, body in lists:
        assert body.get("type") != "array", f"{path} answers a bare array"
        assert set(body["required"]) == ENVELOPE, path


def test_every_list_answers_the_envelope_and_pages(scene):
    client, _ = token_client("admin")
    for path, _ in _list_operations():
        url = path.replace("{hostname}", scene.busy.hostname).replace("{install_id}", str(scene.running.pk))
        answer = client.get(url, {"per_page": 1, "page": 1})
        assert answer.status_code == 200, (url, answer.content[:300])
        body = answer.json()
        assert set(body) == ENVELOPE, url
        assert body["page"] == 1 and body["per_page"] == 1 and len(body["results"]) <= 1, url
        past = client.get(url, {"per_page": 1, "page": body["count"] + 1}).json()
        assert past["results"] == [] and past["count"] == body["count"], url


def test_install_events_page_after_an_id(scene):
    client, _ = token_client("viewer")
    url = f"/api/v1/installs/{scene.running.pk}/events"
    every = client.get(url, {"per_page": 1000}).json()
    assert every["count"] == len(every["results"]) >= 2
    first = client.get(url, {"per_page": 1}).json()
    assert first["count"] == every["count"] and first["results"] == every["results"][:1]
    rest = client.get(url, {"after": first["results"][0]["id"], "per_page": 1000}).json()
    assert rest["results"] == every["results"][1:] and rest["count"] == every["count"] - 1


def test_a_new_install_answers_in_the_envelope(scene):
    client, _ = token_client("technician")
    answer = post(client, "/api/v1/installs/", {"machines": [scene.idle.hostname], "profile": scene.profile.name})
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert set(body) == ENVELOPE and body["count"] == 1 and body["results"][0]["machine"] == "idle-01"


# --- batches ------------------------------------------------------------------------------------


def test_batches_are_listed_with_their_installs_and_filtered_by_state(scene):
    client, _ = token_client("viewer")
    paused = Batch.objects.create(name="later", created_by_label="test", state=BatchState.PAUSED)
    listed = client.get("/api/v1/batches").json()
    assert [b["id"] for b in listed["results"]] == [paused.pk, scene.batch.pk]  # newest first
    one = client.get(f"/api/v1/batches/{scene.batch.pk}").json()
    assert listed["results"][1] == one
    assert one["installs"] == sorted(Install.objects.filter(batch=scene.batch).values_list("pk", flat=True)) != []
    only = client.get("/api/v1/batches", {"state": "paused"}).json()
    assert only["count"] == 1 and only["results"][0]["id"] == paused.pk and only["results"][0]["installs"] == []
    assert is_problem(client.get("/api/v1/batches", {"state": "sleeping"}), 400, "state")


def test_the_batch_list_costs_the_same_queries_for_many_batches(scene):
    client, _ = token_client("viewer")
    client.get("/api/v1/batches")  # the token's first use writes its last-used time
    with CaptureQueriesContext(connection) as few:
        client.get("/api/v1/batches")
    for n in range(5):
        batch = Batch.objects.create(name=f"b{n}", created_by_label="test")
        Install.objects.filter(pk=scene.failed.pk).update(batch=batch)
    with CaptureQueriesContext(connection) as many:
        assert client.get("/api/v1/batches").json()["count"] == 6
    assert len(many) == len(few)


# --- the install list's filters: the page's, with the page's meanings -----------------------------------


def _page_ids(client, params: dict) -> list[int]:
    response = client.get("/installs/", params)
    assert response.status_code == 200, response.content[:300]
    return [i.pk for i in response.context["page"].object_list]


def _api_ids(client, params: dict) -> list[int]:
    response = client.get("/api/v1/installs", params)
    assert response.status_code == 200, response.content[:300]
    return [i["id"] for i in response.json()["results"]]


@pytest.fixture
def spread(scene):
    """Installs across two sites, two profiles and two requesters, besides the scene's."""
    other = make_rack(make_site(slug="far", name="Far"), name="r09")
    remote = make_machine(other, hostname="remote-07", position_u=1)
    make_bmc(remote, address="10.9.0.7")
    ubuntu = type(scene.profile).objects.exclude(pk=scene.profile.pk).first()
    made = [
        _install(remote, ubuntu, "alice", InstallState.FAILED),
        _install(remote, scene.profile, "bob", InstallState.SUCCEEDED),
    ]
    return scene, ubuntu, made


def _install(machine, profile, requested_by: str, state: str) -> Install:
    return Install.objects.create(
        machine=machine,
        profile=profile,
        requested_by_label=requested_by,
        state=state,
        plan=build_plan(machine, profile),
        boot_token_hash=secrets.token_hex(32),
    )


def test_the_install_list_and_the_api_list_the_same_installs_for_the_same_filters(spread):
    scene, ubuntu, _ = spread
    browser = Client()
    browser.force_login(user_with_role("viewer", "reader"))
    client, _ = token_client("viewer")
    queries = [
        {},
        {"state": "active"},
        {"state": "failed"},
        {"machine": "remote"},  # part of the hostname, as the page's search box
        {"machine": "-0"},
        {"site": "far"},
        {"site": "lab"},
        {"profile": ubuntu.name},
        {"batch": str(scene.batch.pk)},
        {"requested_by": "alice"},
        {"site": "far", "state": "succeeded", "requested_by": "bob"},
    ]
    for params in queries:
        expected = _page_ids(browser, params)
        assert _api_ids(client, params) == expected, params
    assert len(_page_ids(browser, {"site": "far"})) == 2 and len(_page_ids(browser, {"requested_by": "alice"})) == 1


def test_a_filter_that_means_nothing_is_refused_by_both_naming_it(scene):
    browser = Client()
    browser.force_login(user_with_role("viewer", "reader"))
    client, _ = token_client("viewer")
    for params, field in (({"state": "sleeping"}, "state"), ({"batch": "x1"}, "batch")):
        page = browser.get("/installs/", params)
        assert page.status_code == 400 and f"Filter {field}:" in page.content.decode()
        assert is_problem(client.get("/api/v1/installs", params), 400, field)


def test_the_page_links_its_other_pages_with_its_filters(spread):
    scene, _, _ = spread
    for _ in range(60):
        _install(scene.idle, scene.profile, "alice", InstallState.CANCELLED)
    browser = Client()
    browser.force_login(user_with_role("viewer", "reader"))
    html = browser.get("/installs/", {"requested_by": "alice", "state": "cancelled"}).content.decode()
    assert 'href="?state=cancelled&amp;requested_by=alice&amp;page=2"' in html


# --- trailing slashes ---------------------------------------------------------------------------------


def test_a_trailing_slash_answers_as_the_path_without_it(scene):
    client, _ = token_client("technician")
    for path in ("/api/v1/machines", f"/api/v1/machines/{scene.busy.hostname}", "/api/v1/installs",
                 f"/api/v1/installs/{scene.running.pk}/events", "/api/v1/batches", "/api/v1/openapi.json"):  # fmt: skip
        bare, slashed = client.get(path), client.get(path + "/")
        assert bare.status_code == slashed.status_code == 200, path
        assert bare.json() == slashed.json(), path
    assert client.get("/api/v1/no-such-thing/").status_code == client.get("/api/v1/no-such-thing").status_code == 404


def test_a_post_to_a_trailing_slash_keeps_its_body_and_writes_once(scene):
    client, _ = token_client("technician")
    before = AuditEntry.objects.filter(action="batch.pause").count()
    answer = post(client, f"/api/v1/batches/{scene.batch.pk}/pause/", {"why": "lunch break"})
    assert answer.status_code == 200, answer.content  # not a redirect, which would lose the body
    assert answer.json()["state"] == "paused" and answer.json()["pause_reason"] == "lunch break"
    assert Batch.objects.get(pk=scene.batch.pk).state == BatchState.PAUSED
    assert AuditEntry.objects.filter(action="batch.pause").count() == before + 1
    refused = post(client, "/api/v1/installs/", {"machines": ["nope"], "profile": scene.profile.name})
    assert is_problem(refused, 404)


# --- the interactive documentation ------------------------------------------------------------------


def test_the_docs_page_is_for_a_viewers_session_and_loads_only_our_own_scripts(scene):
    assert Client().get("/api/v1/docs")["Location"].startswith("/login/?next=/api/v1/docs")
    norole = Client()
    norole.force_login(user_with_role("norole", "nobody"))
    assert norole.get("/api/v1/docs").status_code == 403
    browser = Client()
    browser.force_login(user_with_role("viewer", "reader"))
    page = browser.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "script-src 'self'" in page["Content-Security-Policy"]
    assert "unsafe-inline" not in page["Content-Security-Policy"].split("script-src")[1].split(";")[0]
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all(re.search(r'src="/static/', s) for s in scripts), scripts
    assert not re.search(r"<script[^>]*>[^<]", html)  # no inline script
    assert "//cdn" not in html and "unpkg" not in html and "jsdelivr" not in html
    assert 'data-openapi-url="/api/v1/openapi.json"' in html
    assert browser.get("/api/v1/docs/").status_code == 200


def test_the_openapi_document_is_read_with_a_token_or_a_viewers_session(scene):
    client, _ = token_client("viewer")
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/batches" in spec["paths"] and "get" in spec["paths"]["/api/v1/batches"]
    browser = Client()
    browser.force_login(user_with_role("viewer", "reader"))
    assert browser.get("/api/v1/openapi.json").json() == spec
    nobody, _ = token_client("norole")
    assert is_problem(nobody.get("/api/v1/openapi.json"), 403)
    assert is_problem(Client(HTTP_AUTHORIZATION="Token prv_nonsense").get("/api/v1/openapi.json"), 401)
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) and {"list_installs", "list_batches", "start_batch"} <= set(ids)
