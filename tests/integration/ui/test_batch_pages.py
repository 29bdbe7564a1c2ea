"""The batches pages: progress by state, caps, pause state and who started each batch; one batch's installs; the
actions for technicians only; what they cost."""

from __future__ import annotations

import secrets

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEntry
from installs import batches
from installs.models import Batch, BatchState, Event, Install, InstallState
from installs.plan import build_plan
from tests.conftest import make_machine
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db


def client_for(role: str) -> Client:
    client = Client()
    client.force_login(user_with_role(role, f"{role}-batches"))
    return client


def _add(batch, scene, state, n: int, **fields) -> list[Install]:
    made = []
    plan = build_plan(scene.busy, scene.profile)  # what it would do matters not here
    for _ in range(n):
        machine = make_machine(None)
        made.append(
            Install.objects.create(
                machine=machine,
                profile=scene.profile,
                batch=batch,
                requested_by_label="alice",
                state=state,
                plan=plan,
                boot_token_hash=secrets.token_hex(32),
                **fields,
            )
        )
    return made


@pytest.fixture
def big(scene):
    """A paused batch of ten: 2 succeeded, 1 failed, 3 installing, 4 queued."""
    batch = Batch.objects.create(
        name="rack 7 refresh", created_by_label="alice", state=BatchState.PAUSED, max_per_site=4, max_per_rack=2,
        stagger_s=7.5, pause_reason="Paused by itself: 1 of 3 ended installs failed.",
    )  # fmt: skip
    _add(batch, scene, InstallState.SUCCEEDED, 2)
    _add(batch, scene, InstallState.FAILED, 1, failure_reason="InstallerFailed", failure_message="disk full")
    _add(batch, scene, InstallState.INSTALLING, 3, current_step="Installer running")
    _add(batch, scene, InstallState.QUEUED, 4)
    return batch


def test_the_list_shows_each_batch_with_its_progress_caps_pause_and_starter(scene, big):
    html = client_for("viewer").get("/batches/").content.decode()
    assert f'href="/batches/{big.pk}/">rack 7 refresh</a>' in html
    assert "3 of 10 ended: 2 succeeded, 1 failed" in html
    assert '<progress max="10" value="3"' in html
    for state, n in (("succeeded", 2), ("failed", 1), ("installing", 3), ("queued", 4)):
        assert f'<span class="badge s-{state}">{state}</span> {n}</li>' in html
    assert "at most 4 per site, 2 per rack; 7.5 s between power-ons" in html
    assert "Paused by itself: 1 of 3 ended installs failed." in html
    assert "alice" in html
    assert f'href="/batches/{scene.batch.pk}/">rollout</a>' in html  # the scene's batch too, with its one install
    assert "0 of 1 ended" in html


def test_the_list_filters_by_state_and_costs_the_same_for_2_or_40_batches(scene, big):
    client = client_for("viewer")
    paused = client.get("/batches/", {"state": "paused"}).content.decode()
    assert "rack 7 refresh" in paused and "rollout" not in paused

    def cost() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/batches/").status_code == 200
        return len(queries)

    few = cost()
    for n in range(38):
        _add(Batch.objects.create(name=f"b{n}", created_by_label="bob"), scene, InstallState.QUEUED, 1)
    assert cost() == few and few <= 8
    for n in range(12):
        Batch.objects.create(name=f"more{n}", created_by_label="bob")
    html = client.get("/batches/", {"state": "running"}).content.decode()
    assert "page 1 of 2" in html and 'href="?state=running&amp;page=2"' in html


def test_the_batch_page_lists_its_installs_with_state_step_and_why_it_failed(scene, big):
    client = client_for("viewer")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/batches/{big.pk}/")
    assert response.status_code == 200 and len(queries) <= 10
    html = response.content.decode()
    rows = html.split("<tbody>")[1]
    assert rows.count("<tr") == 10
    assert "Installer running" in rows and "<code>InstallerFailed</code> disk full" in rows
    assert "Started</dt><dd>by alice" in html
    assert f'href="/installs/?batch={big.pk}"' in html
    # A viewer reads; the buttons are the technician's.
    assert "batch-action" not in html and f"/batches/{big.pk}/resume" not in html
    assert client.get("/batches/999999/").status_code == 404


def test_a_technician_resumes_pauses_and_cancels_from_the_batch_page_confirmed_and_audited(scene, big):
    client = client_for("technician")
    html = client.get(f"/batches/{big.pk}/").content.decode()
    # Paused: it offers resume and cancel; cancelling asks first, saying how many installs it stops.
    assert f'action="/batches/{big.pk}/resume"' in html and f'action="/batches/{big.pk}/pause"' not in html
    assert "Its 7 install(s) not yet ended are cancelled" in html
    assert 'id="batch-confirm"' in html

    response = client.post(f"/batches/{big.pk}/resume", {"next": f"/batches/{big.pk}/"})
    assert response.status_code == 302 and response["Location"] == f"/batches/{big.pk}/"
    big.refresh_from_db()
    assert big.state == BatchState.RUNNING and big.pause_reason == ""
    html = client.get(f"/batches/{big.pk}/").content.decode()
    assert f'action="/batches/{big.pk}/pause"' in html and f'action="/batches/{big.pk}/resume"' not in html

    client.post(f"/batches/{big.pk}/pause", {"next": f"/batches/{big.pk}/", "why": "switch swap"})
    big.refresh_from_db()
    assert big.state == BatchState.PAUSED and big.pause_reason == "switch swap"
    assert "switch swap" in client.get(f"/batches/{big.pk}/").content.decode()
    actions = list(AuditEntry.objects.filter(object_id=str(big.pk)).values_list("action", "actor_label"))
    assert ("batch.resume", "technician-batches") in actions and ("batch.pause", "technician-batches") in actions

    client.post(f"/batches/{big.pk}/cancel", {"next": f"/batches/{big.pk}/"})
    big.refresh_from_db()
    assert big.state == BatchState.CANCELLED
    html = client.get(f"/batches/{big.pk}/").content.decode()
    assert "Cancel batch" not in html and "10 of 10 ended" in html


def test_pausing_and_resuming_tells_each_install_not_yet_ended_so_pages_hear_of_it(scene, big):
    actor = batches.Actor.system("test")
    before = Event.objects.count()
    batches.set_batch_state(big.pk, BatchState.RUNNING, actor)
    told = Event.objects.filter(pk__gt=0).order_by("-id")[: Event.objects.count() - before]
    assert {e.install.state for e in told} == {InstallState.INSTALLING, InstallState.QUEUED}
    assert len(told) == 7 and all(e.message == "rack 7 refresh resumed by test" for e in told)
    assert all(e.data == {"batch": big.pk, "batch_state": "running"} for e in told)
    batches.set_batch_state(big.pk, BatchState.PAUSED, actor, "rack power work")
    assert Event.objects.filter(message="rack 7 refresh paused by test: rack power work").count() == 7


def test_the_dashboard_links_its_batches_to_their_page(scene):
    html = client_for("viewer").get("/").content.decode()
    assert f'href="/batches/{scene.batch.pk}/">rollout</a>' in html
    assert 'href="/batches/"' in html  # the nav link
