"""Every page, action and API endpoint of the UI × every role: allowed, or refused (403; anonymous
gets the login page, or 401 from the API), and nothing in between. is_staff alone is no role ("staff"),
and the "admin" user is not staff: the Django admin and django-rq's queue pages go by the admin role."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse
from rq import SimpleWorker
from rq.job import Job

from console import queue_pages
from core import queues
from tests import redis_claim
from tests.integration.ui.conftest import ROLES

pytestmark = pytest.mark.django_db

LEVEL = {"anonymous": 0, "norole": 0, "staff": 0, "viewer": 1, "technician": 2, "admin": 3, "superuser": 3}
NEED = {"viewer": 1, "technician": 2, "admin": 3}


@pytest.fixture
def rq_jobs():
    """Jobs on the default queue (django-rq's queue 0): a finished one with a result, and queued ones."""
    redis_claim.flush()
    queue = queues.get_queue()
    finished = queue.enqueue("os.getcwd")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    class Jobs:
        pass

    jobs = Jobs()
    jobs.finished = Job.fetch(finished.id, connection=queue.connection)
    jobs.queued = queue.enqueue("os.getcwd")
    jobs.doomed = queue.enqueue("os.getcwd")
    yield jobs
    redis_claim.flush()


def endpoints(s, rq):
    """(name, method, url, data, needed role). Data chosen so an allowed write is refused by the service
    or harmless: the matrix is about who gets through, not about what the action does."""
    m, i, idle, d = s.idle.hostname, s.running.pk, s.idle.pk, s.discovered.pk
    result = rq.finished.latest_result()
    pages = [
        ("dashboard", "get", reverse("home"), None, "viewer"),
        ("dashboard partial", "get", reverse("home") + "?partial=1", None, "viewer"),
        ("machine list", "get", reverse("inventory:machine-list"), None, "viewer"),
        ("machine rows", "get", reverse("inventory:machine-list") + "?partial=rows", None, "viewer"),
        ("machine csv", "get", reverse("inventory:machine-export"), None, "viewer"),
        ("machine page", "get", reverse("inventory:machine-detail", args=[m]), None, "viewer"),
        ("hardware page", "get", reverse("inventory:machine-hardware", args=[m]), None, "viewer"),
        (
            "mark",
            "post",
            reverse("inventory:machine-mark", args=[m]),
            {"action": "mark-fixed", "reason": "x"},
            "technician",
        ),
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
        ("view save", "post", reverse("install-view-save"), {"name": "mine", "query": "state=failed"}, "viewer"),
        ("view delete", "post", reverse("install-view-delete", args=[999999]), {}, "viewer"),
        ("columns", "post", reverse("inventory:machine-columns"), {"column": ["status"]}, "viewer"),
        ("batches", "get", reverse("batch-list"), None, "viewer"),
        ("batch page", "get", reverse("batch-detail", args=[s.batch.pk]), None, "viewer"),
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
        ("discovered", "get", reverse("inventory:discovered-list"), None, "viewer"),
        ("discovered rows", "get", reverse("inventory:discovered-list") + "?partial=rows", None, "viewer"),
        ("discovered page", "get", reverse("inventory:discovered-detail", args=[d]), None, "viewer"),
        ("discovered accept", "post", reverse("inventory:discovered-accept", args=[d]), {"hostname": ""}, "technician"),
        ("discovered inventory", "post", reverse("inventory:discovered-inventory", args=[d]), {}, "technician"),
        ("discovered discard", "post", reverse("inventory:discovered-discard", args=[d]), {}, "technician"),
        ("discovered forget", "post", reverse("inventory:discovered-forget", args=[d]), {}, "technician"),
        ("admin", "get", "/admin/", None, "admin"),
        ("admin machines", "get", "/admin/inventory/machine/", None, "admin"),
        ("admin workflows", "get", "/admin/installs/workflow/", None, "admin"),
        ("admin scripts", "get", "/admin/installs/script/add/", None, "admin"),
        ("rq queues", "get", reverse("django_rq:home"), None, "admin"),
        ("rq queue", "get", reverse("django_rq:jobs", args=[0]), None, "admin"),
        ("rq finished", "get", reverse("django_rq:finished_jobs", args=[0]), None, "admin"),
        ("rq job", "get", reverse("django_rq:job_detail", args=[0, rq.finished.id]), None, "admin"),
        ("rq result", "get", reverse("django_rq:result_detail", args=[0, rq.finished.id, result.id]), None, "admin"),
        ("rq workers", "get", reverse("django_rq:workers", args=[0]), None, "admin"),
        ("rq delete job", "post", reverse("django_rq:delete_job", args=[0, rq.doomed.id]), {}, "admin"),
        ("rq stop job", "post", reverse("django_rq:stop_job", args=[0, rq.queued.id]), {}, "admin"),
        (
            "rq bulk requeue",
            "post",
            reverse("django_rq:actions", args=[0]),
            {"action": "requeue", "job_ids": [rq.finished.id]},
            "admin",
        ),
    ]
    start = {"machines": [s.busy.hostname], "profile": s.profile.name}
    accept = {"hostname": "x", "rack": str(s.rack.pk), "position_u": 30}
    api = [
        ("api openapi", "get", "/api/v1/openapi.json", None, "viewer"),
        ("api machines", "get", "/api/v1/machines", None, "viewer"),
        ("api machine", "get", f"/api/v1/machines/{m}", None, "viewer"),
        ("api facts", "get", f"/api/v1/machines/{m}/facts", None, "viewer"),
        ("api facts version", "get", f"/api/v1/machines/{m}/facts/1", None, "viewer"),
        (
            "api lifecycle",
            "post",
            f"/api/v1/machines/{m}/lifecycle",
            {"action": "mark-fixed", "reason": "x"},
            "technician",
        ),  # fmt: skip
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
        ("api workflows", "get", "/api/v1/workflows", None, "viewer"),
        ("api workflow", "get", "/api/v1/workflows/none", None, "viewer"),
        ("api workflow check", "post", "/api/v1/workflows/check", {"document": "name: x"}, "viewer"),
        ("api workflow save", "post", "/api/v1/workflows", {"document": "name: x"}, "admin"),
        ("api scripts", "get", "/api/v1/scripts", None, "viewer"),
        ("api discovered", "get", "/api/v1/discovered", None, "viewer"),
        ("api discovered one", "get", f"/api/v1/discovered/{d}", None, "viewer"),
        # U30 of a 12U rack: refused by the accept itself once the role lets the request through.
        ("api discovered accept", "post", f"/api/v1/discovered/{d}/accept", accept, "technician"),
        ("api discovered inventory", "post", f"/api/v1/discovered/{d}/inventory", {}, "technician"),
        ("api discovered discard", "post", f"/api/v1/discovered/{d}/discard", {}, "technician"),
        ("api discovered forget", "post", f"/api/v1/discovered/{d}/forget", {}, "technician"),
        ("api script save", "post", "/api/v1/scripts", {"name": "x", "body": "#!/bin/sh\n"}, "admin"),
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
def test_role_matrix(role, users, scene, rq_jobs):
    pages, api = endpoints(scene, rq_jobs)
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


def _django_rq_pages():
    """Every page django-rq mounts for people (not stats.json), with made-up arguments: the role check
    answers before django-rq looks anything up. A page a later django-rq adds is in this list too."""
    values = {"IntConverter": 0, "StringConverter": "x", "PathConverter": "x/y"}
    for pattern in queue_pages.urlpatterns:
        if pattern.name in ("home_json", "metrics"):
            continue
        kwargs = {name: values[type(c).__name__] for name, c in pattern.pattern.converters.items()}
        yield reverse(f"django_rq:{pattern.name}", kwargs=kwargs)


@pytest.mark.parametrize("role", [r for r in ROLES if LEVEL[r] < NEED["admin"]])
def test_every_django_rq_page_refuses_all_but_the_admin_role(role, users):
    client = _client(role, users)
    pages = list(_django_rq_pages())
    assert len(pages) >= 20 and reverse("django_rq:stop_job", args=[0, "x"]) in pages
    failures = []
    for url in pages:
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            if role == "anonymous":
                ok = response.status_code == 302 and response["Location"].startswith(f"{reverse('login')}?next=")
            else:
                ok = response.status_code == 403
            if not ok:
                failures.append(f"{method} {url}: {response.status_code} {response.get('Location', '')}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ROLES)
def test_only_the_admin_role_deletes_a_job_from_the_queue_pages(role, users, rq_jobs):
    client = _client(role, users)
    response = client.post(reverse("django_rq:delete_job", args=[0, rq_jobs.doomed.id]))
    deleted = not Job.exists(rq_jobs.doomed.id, connection=queues.connection())
    assert deleted == (LEVEL[role] >= NEED["admin"]), response.status_code
    if deleted:
        assert response["Location"] == reverse("django_rq:jobs", args=[0])
    else:
        assert rq_jobs.doomed.id in queues.get_queue().job_ids


def test_django_rq_pages_keep_their_own_decorators_for_admins(users, rq_jobs):
    """Past the role check, django-rq's views run as django-rq wrote them: never cached, and a job is
    stopped only by POST."""
    client = _client("admin", users)
    assert not users["admin"].is_staff
    page = client.get(reverse("django_rq:jobs", args=[0]))
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    assert rq_jobs.queued.id in page.content.decode()
    assert client.get(reverse("django_rq:stop_job", args=[0, rq_jobs.queued.id])).status_code == 405
    users["admin"].refresh_from_db()
    assert not users["admin"].is_staff  # django-rq saw a staff member; the user row never changed


@pytest.mark.parametrize("role", ROLES)
def test_django_rq_stats_json_needs_the_admin_role_or_its_api_token(role, users, rq_jobs, settings):
    settings.RQ_API_TOKEN = "rqstatstoken"
    client = _client(role, users)
    url = reverse("django_rq:home_json")
    allowed = LEVEL[role] >= NEED["admin"]
    response = client.get(url)
    assert response.status_code == (200 if allowed else 401)
    if allowed:
        assert response.json()["queues"][0]["name"] == "default"
    assert client.get(url, headers={"Authorization": "Bearer rqstatstoken"}).status_code == 200
    assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == (200 if allowed else 401)
    assert client.get(f"{url}rqstatstoken/").status_code == 200


def test_django_rq_is_mounted_once_not_inside_the_django_admin(users):
    """django-rq's own admin integration would serve its pages and stats.json again under /admin/."""
    client = _client("superuser", users)
    assert client.get(reverse("django_rq:home")).status_code == 200
    for url in ("/admin/django_rq/dashboard/", "/admin/django_rq/dashboard/stats.json"):
        assert client.get(url).status_code == 404, url
