"""The Import page and POST /api/v1/import/machines: admins only, a preview that writes nothing and never shows a
BMC password back, apply only of the file that was previewed, and the export that imports back unchanged."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from accounts.api_tokens import create_token
from audit.models import AuditEntry
from audit.service import Actor
from inventory.models import Machine
from tests.conftest import make_rack, make_site
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db

PASSWORD = "page-imported-secret"
GOOD = (
    "site,rack,hostname,position_u,nics,bmc_address,bmc_password\n"
    f"dc1,r01,web-1,1,*52:54:00:fa:00:01,10.9.0.1,{PASSWORD}\n"
)
BAD = "site,rack,hostname,position_u,nics\ndc1,r01,web-2,1,52:54:00:fa:00:zz\n"
URL = "/api/v1/import/machines"


@pytest.fixture(autouse=True)
def rack():
    return make_rack(make_site(slug="dc1"), name="r01")


def api(role: str) -> Client:
    _, key = create_token(user_with_role(role, f"{role}-import"), "test", actor=Actor.system("test"))
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


def upload(text: str, name: str = "machines.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def test_page_previews_then_applies_the_same_file_only(admin_client):
    page = reverse("inventory:machine-import")
    assert page in admin_client.get(reverse("inventory:machine-list")).content.decode()
    preview = admin_client.post(page, {"file": upload(GOOD)})
    html = preview.content.decode()
    assert preview.status_code == 200 and "web-1" in html and "1 to create" in html
    assert PASSWORD not in html and not Machine.objects.exists()
    sha256, digest = preview.context["sha256"], preview.context["plan"].digest
    other = admin_client.post(page, {"file": upload(GOOD + "\n"), "apply": "1", "sha256": sha256, "digest": digest})
    assert other.status_code == 400 and "not the file that was previewed" in other.content.decode()
    assert not Machine.objects.exists()
    done = admin_client.post(page, {"file": upload(GOOD), "apply": "1", "sha256": sha256, "digest": digest})
    assert done.status_code == 302 and Machine.objects.get(hostname="web-1").bmc.get_password() == PASSWORD


def test_page_highlights_each_problem_and_offers_no_apply(admin_client):
    response = admin_client.post(reverse("inventory:machine-import"), {"file": upload(BAD)})
    html = response.content.decode()
    assert 'class="import-error"' in html and "52:54:00:fa:00:zz" in html
    assert 'name="apply"' not in html


def test_page_and_api_are_for_admins_only():
    technician = Client()
    technician.force_login(user_with_role("technician", "tech-import"))
    assert technician.get(reverse("inventory:machine-import")).status_code == 403
    assert api("technician").post(f"{URL}?dry_run=1", GOOD, content_type="text/csv").status_code == 403


def test_api_dry_run_then_apply_and_problems_as_a_400():
    client = api("admin")
    preview = client.post(f"{URL}?dry_run=1", GOOD, content_type="text/csv")
    assert preview.status_code == 200, preview.content
    body = preview.json()
    assert body["created"] == 1 and body["problems"] == [] and PASSWORD not in preview.content.decode()
    assert not Machine.objects.exists()
    for url in (URL, f"{URL}?dry_run=1"):
        refused = client.post(url, BAD, content_type="text/csv")
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["loc"] == ["body", "row 2", "nics"]
    yaml_body = (
        "- hostname: web-1\n  site: dc1\n  rack: r01\n  position_u: 1\n"
        f"  bmc_address: 10.9.0.1\n  bmc_password: {PASSWORD}\n"
    )
    applied = client.post(URL, yaml_body, content_type="application/yaml")
    assert applied.status_code == 200 and applied.json()["created"] == 1
    entry = AuditEntry.objects.get(action="inventory.import")
    assert entry.actor_label == "admin-import" and PASSWORD not in json.dumps(entry.details)
    assert client.post(URL, "x", content_type="text/plain").status_code == 415


def test_api_export_imports_back_unchanged():
    client = api("admin")
    client.post(URL, GOOD, content_type="text/csv")
    exported = client.get("/api/v1/export/machines?format=json")
    assert exported.status_code == 200 and PASSWORD not in exported.content.decode()
    again = client.post(f"{URL}?dry_run=1", exported.content, content_type="application/json").json()
    assert (again["created"], again["changed"], again["unchanged"]) == (0, 0, 1)
