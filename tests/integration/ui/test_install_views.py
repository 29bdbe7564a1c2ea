"""The install list's time filters (the page and the API alike) and a person's saved views of its filters."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.preferences import MAX_SAVED_VIEWS, SavedView
from audit.models import AuditEntry
from installs.models import Install, InstallState
from installs.plan import build_plan
from tests.integration.ui.conftest import user_with_role
from tests.integration.ui.test_rest import is_problem, token_client

pytestmark = pytest.mark.django_db


def _install_at(scene, when: datetime, state=InstallState.SUCCEEDED, by="alice") -> Install:
    install = Install.objects.create(
        machine=scene.idle,
        profile=scene.profile,
        requested_by_label=by,
        state=state,
        plan=build_plan(scene.idle, scene.profile),
        boot_token_hash=secrets.token_hex(32),
    )
    Install.objects.filter(pk=install.pk).update(created_at=when)  # auto_now_add ignores a given value
    return install


def _reader(name="reader") -> tuple[Client, object]:
    user = user_with_role("viewer", name)
    client = Client()
    client.force_login(user)
    return client, user


def _page_ids(client, params) -> list[int]:
    response = client.get("/installs/", params)
    assert response.status_code == 200, response.content[:300]
    return [i.pk for i in response.context["page"].object_list]


def test_since_and_until_take_whole_days_in_the_servers_zone_on_the_page_and_in_the_api(scene):
    day = timezone.make_aware(datetime(2026, 11, 20, 0, 0))
    before = _install_at(scene, day - timedelta(seconds=1))
    first = _install_at(scene, day)
    last = _install_at(scene, day + timedelta(hours=23, minutes=59))
    after = _install_at(scene, day + timedelta(days=1))
    browser, _ = _reader()
    api, _ = token_client("viewer")
    cases = [
        ({"since": "2026-11-20", "until": "2026-11-20"}, [last.pk, first.pk]),
        ({"since": "2026-11-21"}, [after.pk]),
        ({"until": "2026-11-19"}, [before.pk]),
        ({"since": (day + timedelta(hours=12)).isoformat()}, [after.pk, last.pk]),
        ({"until": day.isoformat()}, [first.pk, before.pk]),  # an instant includes itself
    ]
    for params, expected in cases:
        page = [pk for pk in _page_ids(browser, params) if pk in {before.pk, first.pk, last.pk, after.pk}]
        assert page == expected, params
        response = api.get("/api/v1/installs", params)
        assert [i["id"] for i in response.json()["results"] if i["id"] in expected or i["id"] in page] == expected


@pytest.mark.parametrize("field", ["since", "until"])
def test_a_date_that_is_not_one_is_a_400_naming_the_field_on_both(scene, field):
    browser, _ = _reader()
    api, _ = token_client("viewer")
    for value in ("yesterday", "2026-13-01", "2026-02-30T10:00", "\x00"):
        page = browser.get("/installs/", {field: value})
        assert page.status_code == 400 and f"{field}:" in page.content.decode(), value  # NUL: the edge's refusal
        assert is_problem(api.get("/api/v1/installs", {field: value}), 400, field), value


def test_the_filter_form_offers_every_filter_and_keeps_their_values(scene):
    browser, _ = _reader()
    html = browser.get(
        "/installs/",
        {"state": "failed", "site": "lab", "profile": scene.profile.name, "requested_by": "test",
         "since": "2026-01-01", "until": "2026-12-31"},
    ).content.decode()  # fmt: skip
    for name, value in (("site", "lab"), ("requested_by", "test"), ("since", "2026-01-01"), ("until", "2026-12-31")):
        assert f'name="{name}" value="{value}"' in html
    assert "<option selected>failed</option>" in html
    assert f'name="profile" value="{scene.profile.name}"' in html


def test_a_saved_view_is_kept_linked_above_the_list_and_only_for_its_owner(scene):
    browser, user = _reader()
    response = browser.post("/installs/views/", {"name": " Failed  at lab ", "query": "site=lab&state=failed&page=3"})
    view = SavedView.objects.get(user=user)
    assert view.name == "Failed at lab" and view.query == "state=failed&site=lab"  # the page number is not a filter
    assert response.status_code == 302 and response["Location"] == "/installs/?state=failed&site=lab"
    entry = AuditEntry.objects.get(action="view.save")
    assert entry.actor_user == user and entry.details["query"] == "state=failed&site=lab"

    html = browser.get("/installs/").content.decode()
    assert 'href="/installs/?state=failed&amp;site=lab">Failed at lab</a>' in html
    assert browser.get("/installs/", {"state": "failed", "site": "lab"}).context["page"].object_list[0] == scene.failed

    other, _ = _reader("someone-else")
    assert "Failed at lab" not in other.get("/installs/").content.decode()
    assert other.post(f"/installs/views/{view.pk}/delete").status_code == 404
    assert SavedView.objects.filter(pk=view.pk).exists()

    # The same name again replaces its filters rather than making a second view.
    browser.post("/installs/views/", {"name": "Failed at lab", "query": "state=active"})
    assert list(SavedView.objects.filter(user=user).values_list("query", flat=True)) == ["state=active"]

    assert browser.post(f"/installs/views/{view.pk}/delete").status_code == 302
    assert not SavedView.objects.filter(user=user).exists()
    assert AuditEntry.objects.filter(action="view.delete", actor_user=user).count() == 1
    assert ">Failed at lab</a>" not in browser.get("/installs/").content.decode()


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "", "query": "state=failed"}, "name"),
        ({"name": "   ", "query": "state=failed"}, "name"),
        ({"name": "x" * 101, "query": ""}, "name"),
        ({"name": "n\x00ul", "query": ""}, "name"),
        ({"name": "odd", "query": "state=sleeping"}, "query"),
        ({"name": "odd", "query": "since=someday"}, "query"),
        # each filter is cut at 200 characters, but its query string takes 6 for each of these
        ({"name": "long", "query": "machine=" + "é" * 200}, "query"),
    ],
)
def test_a_view_that_cannot_be_kept_is_a_400_naming_the_field_and_writes_nothing(scene, data, field):
    browser, _ = _reader()
    response = browser.post("/installs/views/", data)
    assert response.status_code == 400 and f"{field}:" in response.content.decode()[:30]  # NUL: the edge's refusal
    assert not SavedView.objects.exists() and not AuditEntry.objects.filter(action="view.save").exists()


def test_a_person_keeps_at_most_so_many_views(scene):
    browser, user = _reader()
    for n in range(MAX_SAVED_VIEWS):
        assert browser.post("/installs/views/", {"name": f"v{n}", "query": ""}).status_code == 302
    response = browser.post("/installs/views/", {"name": "one more", "query": ""})
    assert response.status_code == 400 and "delete one first" in response.content.decode()
    assert SavedView.objects.filter(user=user).count() == MAX_SAVED_VIEWS
