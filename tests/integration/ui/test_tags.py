"""Tags on machines: names checked, set on one machine or many with one audit entry per change, the machine list's
tag column, filter and search (page, CSV, REST, CLI alike), the machine page's tag field for admins, "every machine
tagged X" as a bulk action's selection and a batch's, GET/POST/PATCH/DELETE tags, and the import's tags column."""

from __future__ import annotations

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client

from audit.models import AuditEntry
from audit.service import Actor
from installs.models import Batch, Install
from inventory import import_format, importing, tagging
from inventory.models import Machine, Tag
from tests.conftest import make_machine
from tests.integration.ui.conftest import user_with_role
from tests.integration.ui.test_rest import post, token_client

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("test")
LIST = "/machines/"


def client_for(role: str) -> Client:
    client = Client()
    client.force_login(user_with_role(role, f"{role}-tags"))
    return client


def tags_of(machine) -> list[str]:
    return sorted(machine.tags.values_list("name", flat=True))


def hostnames(response) -> list[str]:
    return [m["hostname"] for m in response.json()["results"]]


@pytest.fixture
def tagged(scene):
    """busy-01: gpu and fast; idle-01: gpu; a third machine with none."""
    tagging.set_machine_tags("busy-01", ["gpu", "fast"], ACTOR)
    tagging.set_machine_tags("idle-01", ["gpu"], ACTOR)
    make_machine(hostname="plain-01")
    return scene


# --- names and the services ---------------------------------------------------------------------------------------


def test_names_are_lower_cased_split_on_spaces_commas_and_semicolons_and_bad_ones_named():
    assert tagging.parse("GPU  ceph-osd;customer_a, gpu") == ["gpu", "ceph-osd", "customer_a"]
    assert tagging.parse(["Fast", "fast"]) == ["fast"]
    assert tagging.parse("") == []
    with pytest.raises(ValidationError) as exc:
        tagging.parse("gpu -bad ok caf\u00e9 " + "x" * 51)
    message = exc.value.message_dict["tags"][0]
    assert "-bad" in message and "café" in message and "gpu" not in message.split(".")[0]
    with pytest.raises(ValidationError):
        tagging.parse([f"t{i}" for i in range(tagging.MAX_TAGS + 1)])


def test_setting_a_machines_tags_is_one_audit_entry_listing_what_was_added_removed_and_created(scene):
    Tag.objects.create(name="gpu")
    tagging.set_machine_tags("idle-01", ["gpu", "fast"], ACTOR)
    entry = AuditEntry.objects.filter(action="inventory.machine.tags").latest("pk")
    assert entry.details == {"added": ["fast", "gpu"], "removed": [], "created": ["fast"]}
    assert entry.object_label == "idle-01"
    tagging.set_machine_tags("idle-01", ["fast", "rack-a"], ACTOR)
    entry = AuditEntry.objects.filter(action="inventory.machine.tags").latest("pk")
    assert entry.details == {"added": ["rack-a"], "removed": ["gpu"], "created": ["rack-a"]}
    assert tags_of(scene.idle) == ["fast", "rack-a"]
    count = AuditEntry.objects.count()
    tagging.set_machine_tags("idle-01", ["rack-a", "fast"], ACTOR)  # no change: no entry
    assert AuditEntry.objects.count() == count
    assert Tag.objects.filter(name="gpu").exists()  # a tag no machine has stays, to be picked again


def test_bulk_change_writes_one_entry_listing_the_machines_it_changed(tagged):
    ids = list(Machine.objects.values_list("pk", flat=True))
    changed = tagging.change_tags(ids, ACTOR, add=["fast"])
    assert changed == ["idle-01", "plain-01"]  # busy-01 had it already
    entry = AuditEntry.objects.get(action="inventory.machine.bulk_tags")
    assert entry.details["machines"] == ["idle-01", "plain-01"] and entry.details["added"] == ["fast"]
    assert tagging.change_tags(ids, ACTOR, remove=["gpu"]) == ["busy-01", "idle-01"]
    assert [tags_of(m) for m in Machine.objects.order_by("hostname")] == [["fast"], ["fast"], ["fast"]]
    with pytest.raises(ValidationError):
        tagging.change_tags(ids, ACTOR, add=["x"], remove=["x"])


# --- the machine list -----------------------------------------------------------------------------------------------


def test_list_shows_tag_chips_as_links_and_filters_on_every_tag_given(tagged):
    Tag.objects.filter(name="gpu").update(colour="green", description="Has GPUs")
    client = client_for("viewer")
    html = client.get(LIST).content.decode()
    assert 'class="tag tag-green" href="/machines/?tag=gpu"' in html and ">gpu</a>" in html  # the name, not colour only
    html = client.get(LIST + "?tag=gpu&tag=fast").content.decode()
    assert "busy-01" in html and "idle-01" not in html and "plain-01" not in html
    assert 'name="tag" value="fast" checked' in html  # the filter shows what it holds, each to drop
    html = client.get(LIST + "?tag=GPU").content.decode()
    assert "busy-01" in html and "idle-01" in html and "plain-01" not in html
    assert "busy-01" not in client.get(LIST + "?tag=nosuch").content.decode()
    # A page link keeps every tag.
    assert "tag=gpu&amp;tag=fast" in client.get(LIST + "?tag=gpu&tag=fast&sort=-hostname").content.decode()


def test_search_finds_machines_by_tag(tagged):
    html = client_for("viewer").get(LIST + "?q=fas").content.decode()
    assert "busy-01" in html and "idle-01" not in html


def test_a_tag_filter_that_is_no_tag_name_is_a_400_naming_it(tagged):
    response = client_for("viewer").get(LIST + "?tag=bad%20name!")
    assert response.status_code == 400
    assert "Filter tag: Not a tag name" in response.content.decode()


def test_csv_export_has_the_tags_column(tagged):
    response = client_for("viewer").get("/machines/export.csv?tag=gpu")
    text = b"".join(response.streaming_content).decode()
    header, *rows = text.splitlines()
    assert header.split(",")[-1] == "tags"
    assert sorted(rows) == sorted([r for r in rows if r.startswith(("busy-01", "idle-01"))]) and len(rows) == 2
    assert any(r.startswith("busy-01") and r.endswith(",fast gpu") for r in rows)


def test_admins_add_or_remove_a_tag_on_the_checked_machines_technicians_may_not(tagged):
    ids = [str(m.pk) for m in Machine.objects.filter(hostname__in=["idle-01", "plain-01"])]
    form = {"tag_op": "add", "tag": "Rack-B", "machine": ids, "next": LIST + "?tag=gpu"}
    assert client_for("technician").post("/machines/tags", form).status_code == 403
    assert not Tag.objects.filter(name="rack-b").exists()
    admin = client_for("admin")
    response = admin.post("/machines/tags", form)
    assert response.status_code == 302 and response["Location"] == LIST + "?tag=gpu"
    tags = [tags_of(Machine.objects.get(hostname=h)) for h in ("idle-01", "plain-01")]
    assert tags == [["gpu", "rack-b"], ["rack-b"]]
    entry = AuditEntry.objects.get(action="inventory.machine.bulk_tags")
    assert entry.details["machines"] == ["idle-01", "plain-01"] and entry.actor_label == "admin-tags"
    admin.post("/machines/tags", {**form, "tag_op": "remove"})
    assert not Machine.objects.filter(tags__name="rack-b").exists()
    count = AuditEntry.objects.count()
    response = admin.post("/machines/tags", {**form, "tag": "no good"}, follow=True)
    assert "Not a tag name: no good" not in response.content.decode()  # two names, each fine: "no", "good"
    response = admin.post("/machines/tags", {**form, "tag": "-x"}, follow=True)
    assert "Not a tag name: -x" in response.content.decode()
    response = admin.post("/machines/tags", {**form, "machine": []}, follow=True)
    assert "No machines were selected." in response.content.decode()
    assert AuditEntry.objects.filter(action="inventory.machine.bulk_tags").count() == 3  # add, remove, "no good"
    assert AuditEntry.objects.count() == count + 1


def test_the_list_offers_every_machine_tagged_x_and_its_confirm_page_lists_them(tagged):
    client = client_for("technician")
    html = client.get(LIST).content.decode()
    assert '<option value="gpu">every machine tagged gpu</option>' in html
    assert "Apply tag" not in html  # tagging is the admin's
    assert "Apply tag" in client_for("admin").get(LIST).content.decode()
    response = client.post(
        "/machines/action", {"action": "on", "with_tag": "fast", "machine": [str(tagged.idle.pk)], "next": LIST}
    )
    html = response.content.decode()
    assert response.status_code == 200 and "on 1 machine:" in html
    assert f'name="machine" value="{tagged.busy.pk}"' in html and f'value="{tagged.idle.pk}"' not in html


# --- the machine page -----------------------------------------------------------------------------------------------


def test_machine_page_shows_its_tags_and_admins_edit_them_audited(tagged):
    url = "/machines/busy-01/"
    viewer_html = client_for("viewer").get(url).content.decode()
    assert ">fast</a>" in viewer_html and ">gpu</a>" in viewer_html and 'name="tags"' not in viewer_html
    technician = client_for("technician")
    assert 'name="tags"' not in technician.get(url).content.decode()
    assert technician.post("/machines/busy-01/tags", {"tags": "x"}).status_code == 403
    admin = client_for("admin")
    assert 'value="fast gpu"' in admin.get(url).content.decode()
    response = admin.post("/machines/busy-01/tags", {"tags": "gpu, Storage"}, follow=True)
    assert "busy-01&#x27;s tags: gpu storage." in response.content.decode()
    assert tags_of(tagged.busy) == ["gpu", "storage"]
    entry = AuditEntry.objects.filter(action="inventory.machine.tags").latest("pk")
    assert entry.details["added"] == ["storage"] and entry.details["removed"] == ["fast"]
    assert entry.actor_label == "admin-tags"
    count = AuditEntry.objects.count()
    response = admin.post("/machines/busy-01/tags", {"tags": "ok B@D"}, follow=True)
    assert "Tags: Not a tag name: b@d" in response.content.decode()
    assert AuditEntry.objects.count() == count and tags_of(tagged.busy) == ["gpu", "storage"]


def test_the_admin_site_edits_tags_and_a_machines_tags_audited(tagged):
    admin = client_for("admin")
    response = admin.post("/admin/inventory/tag/add/", {"name": "ceph-osd", "colour": "blue", "description": "OSD"})
    assert response.status_code == 302
    tag = Tag.objects.get(name="ceph-osd")
    assert AuditEntry.objects.filter(action="inventory.tag.add", object_id=str(tag.pk)).exists()
    assert admin.post("/admin/inventory/tag/add/", {"name": "Not OK"}).status_code == 200  # the form says why
    assert not Tag.objects.filter(name__iexact="not ok").exists()
    machine = tagged.idle
    page = admin.get(f"/admin/inventory/machine/{machine.pk}/change/")
    assert page.status_code == 200 and 'name="tags"' in page.content.decode()


# --- REST -----------------------------------------------------------------------------------------------------------


def test_api_lists_tags_filters_on_them_and_admins_write_machines_tags(tagged):
    viewer, _ = token_client("viewer")
    answer = viewer.get("/api/v1/machines", {"tag": ["gpu", "fast"]})
    assert answer.status_code == 200 and hostnames(answer) == ["busy-01"]
    assert answer.json()["results"][0]["tags"] == ["fast", "gpu"]
    assert hostnames(viewer.get("/api/v1/machines?tag=gpu")) == ["busy-01", "idle-01"]
    assert viewer.get("/api/v1/machines/idle-01").json()["tags"] == ["gpu"]
    bad = viewer.get("/api/v1/machines?tag=b%40d")
    assert bad.status_code == 400 and bad.json()["field"] == "tag"
    admin, _ = token_client("admin")
    changed = admin.patch("/api/v1/machines/idle-01", json.dumps({"tags": ["Gpu", "ml"]}), "application/json")
    assert changed.status_code == 200 and changed.json()["tags"] == ["gpu", "ml"]
    entry = AuditEntry.objects.filter(action="inventory.machine.tags").latest("pk")
    assert entry.details == {"added": ["ml"], "removed": [], "created": ["ml"]}
    count = AuditEntry.objects.count()
    refused = admin.patch("/api/v1/machines/idle-01", json.dumps({"tags": ["ok", "n o"]}), "application/json")
    assert refused.status_code == 400 and refused.json()["field"] == "tags" and "n o" in refused.json()["detail"]
    assert AuditEntry.objects.count() == count and tags_of(tagged.idle) == ["gpu", "ml"]
    created = post(admin, "/api/v1/machines", {"hostname": "new-01", "tags": ["gpu"]})
    assert created.status_code == 201 and created.json()["tags"] == ["gpu"]
    technician, _ = token_client("technician")
    denied = technician.patch("/api/v1/machines/idle-01", json.dumps({"tags": []}), "application/json")
    assert denied.status_code == 403 and tags_of(tagged.idle) == ["gpu", "ml"]


def test_api_tags_are_read_by_viewers_and_written_by_admins(tagged):
    viewer, _ = token_client("viewer")
    listed = viewer.get("/api/v1/tags").json()
    assert listed["count"] == 2 and listed["results"][0] == {"name": "fast", "colour": "", "description": "",
                                                               "machines": 1}  # fmt: skip
    assert viewer.get("/api/v1/tags/gpu").json()["machines"] == 2
    assert viewer.get("/api/v1/tags/nosuch").status_code == 404
    assert post(viewer, "/api/v1/tags", {"name": "x"}).status_code == 403
    admin, _ = token_client("admin")
    created = post(admin, "/api/v1/tags", {"name": "Storage", "colour": "blue", "description": "disks"})
    assert created.status_code == 201 and created.json()["name"] == "storage"
    assert post(admin, "/api/v1/tags", {"name": "storage"}).status_code == 400  # taken
    bad = post(admin, "/api/v1/tags", {"name": "no good"})
    assert bad.status_code == 400 and bad.json()["field"] == "name"
    assert post(admin, "/api/v1/tags", {"name": "x", "colour": "mauve"}).status_code in (400, 422)
    renamed = admin.patch("/api/v1/tags/gpu", json.dumps({"name": "gpu-a100"}), "application/json")
    assert renamed.status_code == 200 and renamed.json()["machines"] == 2
    assert tags_of(tagged.busy) == ["fast", "gpu-a100"]
    assert admin.delete("/api/v1/tags/gpu-a100").status_code == 204
    entry = AuditEntry.objects.filter(action="inventory.tag.delete").latest("pk")
    assert entry.details["machines"] == ["busy-01", "idle-01"]
    assert tags_of(tagged.busy) == ["fast"] and admin.delete("/api/v1/tags/gpu-a100").status_code == 404


def test_a_batch_takes_every_machine_with_a_tag(tagged, settings):
    technician, _ = token_client("technician")
    Install.objects.filter(machine=tagged.busy).update(state="succeeded")
    body = {"tag": "fast", "profile": tagged.profile.name}
    both = post(technician, "/api/v1/batches", {**body, "machines": ["idle-01"]})
    assert both.status_code == 400
    neither = post(technician, "/api/v1/batches", {"profile": tagged.profile.name})
    assert neither.status_code == 400 and "machines" in neither.json()["detail"]
    assert post(technician, "/api/v1/batches", {**body, "tag": "nosuch"}).status_code == 404
    started = post(technician, "/api/v1/batches", body)
    assert started.status_code == 201, started.text
    batch = Batch.objects.get(pk=started.json()["id"])
    assert [i.machine.hostname for i in batch.installs.all()] == ["busy-01"]


# --- import and export, the command line, the demo ------------------------------------------------------------------


def test_import_reads_the_tags_column_and_export_writes_it_back_unchanged(tagged):
    text = "hostname,tags\nimp-01,gpu;fast\nimp-02,Storage gpu\nidle-01,\n"
    applied = importing.apply(text, actor=ACTOR)
    assert applied.ok
    assert tags_of(Machine.objects.get(hostname="imp-01")) == ["fast", "gpu"]
    assert tags_of(Machine.objects.get(hostname="imp-02")) == ["gpu", "storage"]
    assert tags_of(tagged.idle) == []  # an empty cell clears them
    entry = AuditEntry.objects.get(action="inventory.import")
    assert {"row": 4, "hostname": "idle-01", "action": "change", "fields": ["tags"]} in entry.details["rows"]
    for file_format in import_format.FORMATS:
        exported = import_format.write(importing.export_rows(), file_format)
        again = importing.plan(exported, file_format)
        assert again.ok and again.count("change") == 0 and again.count("create") == 0, file_format
    exported = import_format.write(importing.export_rows(), "csv")
    assert "fast gpu" in exported.splitlines()[1 + [m.hostname for m in Machine.objects.all()].index("busy-01")]
    bad = importing.plan("hostname,tags\nimp-03,ok n@t\n")
    assert [(p.row, p.column) for p in bad.problems] == [(2, "tags")] and "n@t" in bad.problems[0].message


def test_machines_command_filters_on_tags(tagged):
    out = io.StringIO()
    call_command("machines", "--tag", "gpu", "--tag", "fast", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("busy-01 ") and "fast,gpu" in lines[1]
    out = io.StringIO()
    call_command("machines", "--tag", "gpu", "--json", stdout=out)
    assert [(m["hostname"], m["tags"]) for m in json.loads(out.getvalue())] == [
        ("busy-01", ["fast", "gpu"]),
        ("idle-01", ["gpu"]),
    ]


def test_the_demo_tags_some_machines(db, tmp_path, settings):
    settings.VAR_DIR = tmp_path
    call_command("load_demo", stdout=io.StringIO())
    gpu = set(Machine.objects.filter(tags__name="gpu").values_list("hostname", flat=True))
    storage = set(Machine.objects.filter(tags__name="storage").values_list("hostname", flat=True))
    assert gpu and storage and gpu | storage != set(Machine.objects.values_list("hostname", flat=True))
    assert Tag.objects.get(name="gpu").colour == "green"
    call_command("load_demo", stdout=io.StringIO())  # still idempotent
    assert set(Machine.objects.filter(tags__name="gpu").values_list("hostname", flat=True)) == gpu
