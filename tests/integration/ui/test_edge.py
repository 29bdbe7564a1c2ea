"""What the pages refuse at the edge (core/edge.py): text PostgreSQL cannot store in the path,
the query string or a form field, and numbers past what a column holds. Each is a
400 that names the parameter, answered before any view logic, so nothing is written and an export
never starts streaming."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.api_tokens import ApiToken
from audit.models import AuditEntry
from inventory.models import Machine, OSProfile
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db

HUGE = "203708920034997109101105237721088"


def client_for(role: str) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user_with_role(role, f"{role}-edge"))
    return client


def refused(response, name: str) -> bool:
    text = response.content.decode()
    return response.status_code == 400 and name in text and "NUL" in text


@pytest.mark.parametrize(
    "url, name",
    [
        ("/machines/?q=%00", "q"),
        ("/machines/?vendor=a%00b&q=x", "vendor"),
        ("/audit/?q=%00", "q"),
        ("/audit/?actor=%00", "actor"),
        ("/installs/?machine=%00", "machine"),
        ("/racks/?site=%00", "site"),
        ("/admin/inventory/machine/?q=%00", "q"),
        ("/admin/inventory/osprofile/?q=%00", "q"),
        ("/machines/?%00=1", "query string"),
    ],
)
def test_a_nul_in_a_page_query_is_a_400_naming_the_parameter(scene, url, name):
    response = client_for("admin").get(url)
    assert refused(response, name), (response.status_code, response.content[:300])


@pytest.mark.parametrize("url", ["/machines/export.csv?q=%00", "/audit/export.csv?q=%00&since=2020-01-01"])
def test_an_export_with_a_bad_query_answers_400_before_streaming(scene, url):
    response = client_for("viewer").get(url)
    assert not response.streaming and refused(response, "q"), response.status_code


@pytest.mark.parametrize(
    "url, name",
    [
        ("/machines/busy%00-01/", "hostname"),
        ("/machines/busy-01/preview/debian-12%00/pxelinux", "profile"),
        ("/machines/busy-01/preview/debian-12-preseed/pxe%00linux", "what"),
        ("/installs/1/%00", "path"),
    ],
)
def test_a_nul_in_the_path_is_a_400_naming_the_parameter(scene, url, name):
    response = client_for("technician").get(url)
    assert refused(response, name) or (name == "path" and response.status_code == 404), response.content[:300]


def test_a_nul_in_a_form_field_is_refused_before_any_write(scene):
    admin = client_for("admin")
    audit = AuditEntry.objects.count()
    response = admin.post(f"/machines/{scene.busy.hostname}/protect", {"protected": "1", "reason": "prod\x00db"})
    assert refused(response, "reason")
    assert not Machine.objects.get(pk=scene.busy.pk).protected
    response = admin.post("/account/tokens/", {"name": "ansible\x00"})
    assert refused(response, "name")
    assert not ApiToken.objects.exists()
    response = admin.post(
        f"/admin/inventory/machine/{scene.idle.pk}/change/", {"hostname": "idle\x00-01", "status": "ready"}
    )
    assert refused(response, "hostname")
    response = admin.post(f"/admin/inventory/osprofile/{scene.profile.pk}/change/", {"kernel_args": "quiet\x00"})
    assert refused(response, "kernel_args")
    assert OSProfile.objects.get(pk=scene.profile.pk).kernel_args == scene.profile.kernel_args
    assert Machine.objects.get(pk=scene.idle.pk).hostname == "idle-01"
    assert AuditEntry.objects.count() == audit


@pytest.mark.parametrize(
    "url",
    [
        f"/installs/?batch={HUGE}",
        "/installs/?batch=\u00b2",  # a digit to str.isdigit, not to int()
        f"/installs/?page={HUGE}",
        f"/machines/?rack={HUGE}",
        "/machines/?rack=\u00b2",
        f"/machines/?page={HUGE}&per_page={HUGE}",
        f"/audit/?page={HUGE}&object_id={HUGE}",
        f"/racks/?page={HUGE}",
        "/machines/\u00b2/",
        f"/machines/{HUGE}/",
    ],
)
def test_numbers_a_column_cannot_hold_are_no_server_error(scene, url):
    response = client_for("viewer").get(url)
    assert response.status_code in (200, 400, 404), (response.status_code, response.content[:300])


def test_a_bulk_action_on_ids_no_column_holds_selects_nothing(scene):
    response = client_for("technician").post(
        "/machines/action", {"action": "on", "machine": [HUGE, "\u00b2"], "confirmed": "1"}
    )
    assert response.status_code == 302
    assert AuditEntry.objects.filter(action__startswith="power").count() == 0
