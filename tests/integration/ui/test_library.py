"""The workflow and script library from each of its doors: the REST API, manage.py and the admin site. Every
save goes through installs/library.py: checked, a new version when changed, one audit entry."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from audit.models import AuditEntry
from audit.service import Actor
from installs import library, workflow_docs
from installs import workflow as wf
from installs.models import Script, Workflow
from inventory.models import OSProfile
from tests.integration.ui.conftest import user_with_role
from tests.integration.ui.test_rest import is_problem, post, token_client

pytestmark = pytest.mark.django_db

GOOD = wf.stock_text("image").replace("name: stock-image", "name: web")
# Two problems, on lines 6 and 9 of the document.
BAD = """name: web
method: image
stages:
  - name: prepare
    tasks:
      - chek_bmc
  - name: disks
    tasks:
      - task: raid
        params: {level: 5, members: [/dev/sda, /dev/sdb]}
"""


# --- REST -----------------------------------------------------------------------------------


def test_rest_saves_a_workflow_as_versions_and_reads_them_back():
    admin, _ = token_client("admin")
    first = post(admin, "/api/v1/workflows", {"document": GOOD})
    assert first.status_code == 201 and first.json() == {"name": "web", "version": 1, "new_version": True}
    again = post(admin, "/api/v1/workflows", {"document": GOOD})
    assert again.status_code == 200 and again.json()["version"] == 1 and not again.json()["new_version"]
    changed = GOOD.replace("description: Write", "description: Now write")
    assert post(admin, "/api/v1/workflows", {"document": changed}).json()["version"] == 2
    assert AuditEntry.objects.filter(action="workflow.save", actor_label="admin-api").count() == 2

    listed = admin.get("/api/v1/workflows").json()["results"]
    assert [(w["name"], w["version"]) for w in listed] == [("web", 2)] and "document" not in listed[0]
    latest = admin.get("/api/v1/workflows/web").json()
    assert latest["version"] == 2 and latest["document"] == changed and latest["versions"] == [1, 2]
    assert admin.get("/api/v1/workflows/web?version=1").json()["document"] == GOOD
    assert is_problem(admin.get("/api/v1/workflows/web?version=7"), 404)
    assert is_problem(admin.get("/api/v1/workflows/nothing"), 404)
    assert is_problem(admin.get("/api/v1/workflows/web?version=0"), 400, "version")


def test_rest_refuses_a_bad_workflow_with_each_problem_and_its_line():
    admin, _ = token_client("admin")
    before = AuditEntry.objects.count()
    for url in ("/api/v1/workflows", "/api/v1/workflows/check"):
        response = post(admin, url, {"document": BAD})
        assert is_problem(response, 400, "document"), response.content
        errors = response.json()["errors"]
        assert [e["line"] for e in errors] == [6, 10], errors
        assert "unknown task 'chek_bmc' (did you mean check_bmc?)" in errors[0]["msg"]
        assert errors[1]["msg"].startswith("raid.level") and errors[0]["loc"] == ["body", "body", "document"]
        assert "line 6:" in response.json()["detail"]
    assert not Workflow.objects.exists() and AuditEntry.objects.count() == before
    not_yaml = post(admin, "/api/v1/workflows", {"document": "name: [unclosed"})
    assert is_problem(not_yaml, 400, "document") and not_yaml.json()["errors"][0]["line"] == 1
    stock = post(admin, "/api/v1/workflows", {"document": wf.stock_text("image")})
    assert is_problem(stock, 400, "document") and "stock workflow's name" in stock.json()["detail"]


def test_rest_check_validates_without_writing_and_is_open_to_viewers():
    viewer, _ = token_client("viewer")
    response = post(viewer, "/api/v1/workflows/check", {"document": GOOD})
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "name": "web", "methods": ["image"], "stages": 5, "tasks": 16}
    assert not Workflow.objects.exists()


def test_rest_library_writes_need_the_admin_role():
    technician, _ = token_client("technician")
    assert is_problem(post(technician, "/api/v1/workflows", {"document": GOOD}), 403)
    script = {"name": "tune", "body": "#!/bin/sh\ntrue\n"}
    assert is_problem(post(technician, "/api/v1/scripts", script), 403)
    assert not Workflow.objects.exists() and not Script.objects.exists()
    norole, _ = token_client("norole")
    assert is_problem(norole.get("/api/v1/workflows"), 403) and is_problem(norole.get("/api/v1/scripts"), 403)
    assert technician.get("/api/v1/workflows").status_code == 200


def test_rest_scripts_hide_bodies_in_the_list_and_show_them_in_detail():
    admin, _ = token_client("admin")
    body = {"name": "tune", "body": "#!/bin/sh\necho tuned\n", "timeout_s": 120, "description": "sysctl"}
    created = post(admin, "/api/v1/scripts", body)
    assert created.status_code == 201 and created.json() == {"name": "tune", "version": 1, "new_version": True}
    assert post(admin, "/api/v1/scripts", body).status_code == 200
    assert post(admin, "/api/v1/scripts", {**body, "safe_to_repeat": True}).json()["version"] == 2
    listed = admin.get("/api/v1/scripts")
    assert "echo tuned" not in listed.content.decode()
    assert [(s["name"], s["version"], s["safe_to_repeat"]) for s in listed.json()["results"]] == [("tune", 2, True)]
    detail = admin.get("/api/v1/scripts/tune?version=1").json()
    assert detail["body"] == body["body"] and detail["timeout_s"] == 120 and detail["versions"] == [1, 2]
    assert AuditEntry.objects.filter(action="script.save").count() == 2
    bad = post(admin, "/api/v1/scripts", {**body, "name": "Not A Name"})
    assert is_problem(bad, 400, "name") and Script.objects.count() == 2
    assert is_problem(post(admin, "/api/v1/scripts", {**body, "timeout_s": 0}), 400, "timeout_s")


def test_both_openapi_documents_carry_the_workflow_document_schema():
    viewer, _ = token_client("viewer")
    rest = viewer.get("/api/v1/openapi.json").json()["components"]["schemas"]
    agent = Client().get("/api/agent/v1/openapi.json").json()["components"]["schemas"]
    for schemas in (rest, agent):
        document = schemas["WorkflowDocument"]
        assert document["required"] == ["name", "method", "stages"]
        assert "raid" in schemas["WorkflowTask"]["else"]["properties"]["task"]["enum"]
        assert "#/components/schemas/WorkflowStage" in json.dumps(document)
    assert rest["ProblemError"]["properties"]["line"]


# --- manage.py ------------------------------------------------------------------------------


def run(*args) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return out.getvalue(), exc.returncode
    return out.getvalue(), 0


def test_workflow_check_prints_file_line_and_reason_and_exits_1(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    out, code = run("workflow", "check", str(good), str(bad))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{good}: ok"
    assert lines[1].startswith(f"{bad}:6: unknown task 'chek_bmc'") and lines[2].startswith(f"{bad}:10: raid.level")
    assert run("workflow", "check", str(good)) == (f"{good}: ok\n", 0)
    out, code = run("workflow", "check", str(tmp_path / "missing.yaml"))
    assert code == 1 and out.startswith(f"{tmp_path / 'missing.yaml'}: cannot read it")


def test_workflow_save_list_and_show_and_the_audit_names_the_cli(tmp_path):
    path = tmp_path / "web.yaml"
    path.write_text(GOOD)
    assert run("workflow", "save", str(path)) == ("web version 1\n", 0)
    assert run("workflow", "save", str(path)) == ("web version 1 (unchanged)\n", 0)
    path.write_text(GOOD + "  # tuned\n")
    assert run("workflow", "save", str(path)) == ("web version 2\n", 0)
    entry = AuditEntry.objects.filter(action="workflow.save").latest("id")
    assert entry.actor_label.startswith("cli:") and entry.details == {"name": "web", "version": 2}
    out, _ = run("workflow", "list")
    assert out.splitlines()[1].split()[:2] == ["web", "2"]
    assert run("workflow", "show", "web", "--version", "1") == (GOOD, 0)
    assert run("workflow", "show", "web")[0].endswith("# tuned\n")
    assert run("workflow", "show", "stock-image") == (wf.stock_text("image"), 0)
    assert run("workflow", "show", "web", "--version", "9")[1] == 1
    path.write_text(BAD)
    out, code = run("workflow", "save", str(path))
    assert code == 1 and f"{path}:6:" in out and Workflow.objects.count() == 2


def test_workflow_docs_check_says_when_the_generated_files_are_behind(tmp_path, monkeypatch):
    assert run("workflow", "docs", "--check") == ("ok\n", 0)
    (tmp_path / "docs").mkdir()
    monkeypatch.setattr(workflow_docs, "PROJECT_DIR", tmp_path)
    out, code = run("workflow", "docs", "--check")
    assert code == 1 and "docs/workflow-tasks.md" in out
    assert run("workflow", "docs")[0] == "wrote docs/workflow-tasks.md\nwrote docs/workflow.schema.json\n"
    assert run("workflow", "docs", "--check") == ("ok\n", 0)
    assert json.loads((tmp_path / "docs/workflow.schema.json").read_text())["title"] == "Workflow document"


def test_script_save_and_list(tmp_path):
    path = tmp_path / "tune.sh"
    path.write_text("#!/bin/sh\necho tuned\n")
    args = ("script", "save", "tune", str(path), "--timeout", "2m", "--safe-to-repeat", "--description", "sysctl")
    assert run(*args) == ("tune version 1\n", 0)
    row = Script.objects.get(name="tune")
    assert (row.timeout_s, row.safe_to_repeat, row.description) == (120, True, "sysctl")
    assert AuditEntry.objects.get(action="script.save").actor_label.startswith("cli:")
    out, _ = run("script", "list")
    assert out.splitlines()[1].split()[:4] == ["tune", "1", "120s", "safe"] and "echo tuned" not in out
    with pytest.raises(CommandError, match="name"):
        call_command("script", "save", "Bad Name", str(path), stdout=io.StringIO())


# --- the admin site ------------------------------------------------------------------------


@pytest.fixture
def admin_user_client():
    client = Client()
    client.force_login(user_with_role("admin", "librarian"))
    return client


def test_admin_adds_a_workflow_through_the_library_with_one_audit_entry(admin_user_client):
    response = admin_user_client.post("/admin/installs/workflow/add/", {"document": GOOD})
    assert response.status_code == 302, response.content.decode()[:2000]
    row = Workflow.objects.get()
    assert (row.name, row.version, row.created_by_label) == ("web", 1, "librarian")
    assert list(AuditEntry.objects.filter(object_type="installs.workflow").values_list("action", flat=True)) == [
        "workflow.save"
    ]


def test_admin_shows_each_problem_with_its_line_on_the_document_field(admin_user_client):
    response = admin_user_client.post("/admin/installs/workflow/add/", {"document": BAD})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["document"]
    assert errors[0].startswith("line 6: unknown task 'chek_bmc'") and errors[1].startswith("line 10: raid.level")
    assert "line 6: unknown task" in response.content.decode()
    assert not Workflow.objects.exists()


def test_admin_change_saves_a_new_version_and_old_versions_are_read_only(admin_user_client):
    first, _ = library.save_workflow(GOOD, Actor.system("test"))
    changed = GOOD.replace("description: Write", "description: Now write")
    response = admin_user_client.post(f"/admin/installs/workflow/{first.pk}/change/", {"document": changed})
    assert response.status_code == 302, response.content.decode()[:2000]
    first.refresh_from_db()
    assert first.document == GOOD and first.version == 1  # the old row as it was
    second = Workflow.latest("web")
    assert second.version == 2 and second.document == changed and second.created_by_label == "librarian"
    assert AuditEntry.objects.filter(action="workflow.save", actor_label="librarian").count() == 1
    assert not AuditEntry.objects.filter(action__startswith="installs.workflow").exists()
    # version 1 is now only to be read; posting to it changes nothing
    page = admin_user_client.get(f"/admin/installs/workflow/{first.pk}/change/")
    assert page.status_code == 200 and not page.context["has_change_permission"]
    admin_user_client.post(f"/admin/installs/workflow/{first.pk}/change/", {"document": GOOD + "# x\n"})
    assert Workflow.objects.count() == 2
    renamed = GOOD.replace("name: web", "name: other")
    response = admin_user_client.post(f"/admin/installs/workflow/{second.pk}/change/", {"document": renamed})
    assert response.status_code == 200 and "the document names other" in response.content.decode()
    assert admin_user_client.post(f"/admin/installs/workflow/{second.pk}/delete/", {"post": "yes"}).status_code == 403


def test_admin_script_change_is_a_new_version(admin_user_client):
    form = {"name": "tune", "description": "", "body": "#!/bin/sh\ntrue\n", "timeout_s": 600}
    assert admin_user_client.post("/admin/installs/script/add/", form).status_code == 302
    first = Script.objects.get()
    form = {"description": "tuned", "body": "#!/bin/sh\necho tuned\n", "timeout_s": 60, "safe_to_repeat": "on"}
    assert admin_user_client.post(f"/admin/installs/script/{first.pk}/change/", form).status_code == 302
    assert [(s.version, s.timeout_s, s.safe_to_repeat) for s in Script.objects.order_by("version")] == [
        (1, 600, False),
        (2, 60, True),
    ]
    assert AuditEntry.objects.filter(action="script.save", actor_label="librarian").count() == 2
    assert not AuditEntry.objects.filter(action__startswith="installs.script").exists()
    bad = admin_user_client.post("/admin/installs/script/add/", {**form, "name": "Bad Name"})
    assert bad.status_code == 200 and "name" in bad.context["adminform"].form.errors


def test_admin_profile_form_offers_the_library_workflows(admin_user_client):
    from inventory.stock import sync_stock_profiles

    sync_stock_profiles()
    library.save_workflow(GOOD, Actor.system("test"))
    profile = OSProfile.objects.filter(method="image").first() or OSProfile.objects.first()
    page = admin_user_client.get(f"/admin/inventory/osprofile/{profile.pk}/change/")
    field = page.context["adminform"].form.fields["workflow"]
    values = [value for value, _ in field.widget.choices]
    assert values[0] == "" and "web" in values and "stock-image" in values
    assert "workflow of the library" in field.help_text
