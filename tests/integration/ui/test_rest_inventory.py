"""Inventory written through the REST API over live HTTP with API tokens: sites, racks, profiles, machines with
their NICs and BMC, a workflow's deletion and the boot device. Admins write, viewers and technicians are refused;
every write is audited, a BMC password is never in an answer, a list, the OpenAPI document or the audit log; bad
input is a 400 naming the field and conflicts a 409 with the reasons, and neither writes anything."""

from __future__ import annotations

import json

import pytest
import requests

from audit.models import AuditEntry
from inventory.models import BMC, NIC, Machine, OSProfile, Site
from tests.integration.ui.test_rest import token_client, writes

PASSWORD = "Sw0rdfish-never-shown"


class Api:
    """One user's token against the live server."""

    def __init__(self, base: str, role: str):
        _, key = token_client(role)
        self.base, self.headers = f"{base}/api/v1/", {"Authorization": f"Token {key}"}

    def __call__(self, method: str, path: str, body=None, **params) -> requests.Response:
        data = None if body is None else json.dumps(body)
        headers = {**self.headers, **({"Content-Type": "application/json"} if body is not None else {})}
        return requests.request(method, self.base + path, data=data, headers=headers, params=params, timeout=30)


@pytest.fixture
def api(scene, live_server):
    return {role: Api(live_server.url, role) for role in ("viewer", "technician", "admin")}


def inventory():
    """What a refused write must leave as it was (test_rest.writes: inventory included)."""
    return writes()


def refused_cleanly(response, status: int, field: str | None, before) -> bool:
    body = response.json()
    ok = response.status_code == status and body["status"] == status
    return ok and (field is None or body["field"] == field) and inventory() == before


def audited(action: str, label: str) -> AuditEntry:
    return AuditEntry.objects.filter(action=action, object_label=label).latest("pk")


def test_sites_are_created_read_changed_and_deleted_by_an_admin(api):
    admin = api["admin"]
    body = {"slug": "dc2", "name": "DC 2", "tftp_root": "/srv/tftp/dc2", "base_url": "http://10.2.0.1:8000",
            "bmc_username": "root", "bmc_password": PASSWORD}  # fmt: skip
    created = admin("POST", "sites", body)
    assert created.status_code == 201, created.text
    assert created.json()["bmc_password_set"] is True and PASSWORD not in created.text
    assert Site.objects.get(slug="dc2").get_bmc_password() == PASSWORD
    listed = api["viewer"]("GET", "sites").json()
    assert {"count", "page", "per_page", "results"} <= listed.keys()
    assert "dc2" in [s["slug"] for s in listed["results"]] and PASSWORD not in json.dumps(listed)
    changed = admin("PATCH", "sites/dc2", {"domain": "dc2.example.net"})
    assert changed.status_code == 200 and changed.json()["domain"] == "dc2.example.net"
    assert audited("inventory.site.change", "DC 2").details["changes"]["domain"] == ["", "dc2.example.net"]
    assert admin("DELETE", "sites/dc2").status_code == 204
    assert not Site.objects.filter(slug="dc2").exists()
    assert audited("inventory.site.delete", "DC 2").details["was"]["slug"] == "dc2"
    assert PASSWORD not in json.dumps(list(AuditEntry.objects.values_list("details", flat=True)))


def test_a_site_with_racks_is_not_deleted_and_bad_input_names_the_field(api, scene):
    admin = api["admin"]
    before = inventory()
    assert refused_cleanly(admin("DELETE", f"sites/{scene.site.slug}"), 409, None, before)
    assert "1 rack(s) holding 2 machine(s)" in admin("DELETE", f"sites/{scene.site.slug}").json()["problems"][0]
    body = {"slug": "dc3", "name": "DC 3", "tftp_root": "/srv", "base_url": "not a url"}
    assert refused_cleanly(admin("POST", "sites", body), 400, "base_url", before)
    body["base_url"] = "http://x.example"
    assert refused_cleanly(admin("POST", "sites", {**body, "colour": "red"}), 400, "colour", before)
    assert refused_cleanly(admin("POST", "sites", {**body, "slug": scene.site.slug}), 400, "slug", before)
    assert refused_cleanly(api["technician"]("POST", "sites", body), 403, None, before)


def test_racks_by_site_and_name_refuse_a_duplicate_a_shrink_below_machines_and_deleting_a_full_rack(api, scene):
    admin, before = api["admin"], inventory()
    assert refused_cleanly(admin("POST", "racks", {"site": "lab", "name": "r01"}), 400, "name", before)
    assert refused_cleanly(admin("POST", "racks", {"site": "nowhere", "name": "r9"}), 400, "site", before)
    assert refused_cleanly(admin("PATCH", "racks/lab/r01", {"height_u": 2}), 400, "height_u", before)
    assert refused_cleanly(admin("DELETE", "racks/lab/r01"), 409, None, before)
    assert refused_cleanly(api["viewer"]("POST", "racks", {"site": "lab", "name": "r02"}), 403, None, before)
    created = admin("POST", "racks", {"site": "lab", "name": "r02", "height_u": 24})
    assert created.status_code == 201 and created.json()["path"] == "lab/r02"
    listed = api["viewer"]("GET", "racks", site="lab").json()
    assert [r["path"] for r in listed["results"]] == ["lab/r01", "lab/r02"] and listed["count"] == 2
    assert listed["results"][0]["machines"] == ["busy-01", "idle-01"]
    assert admin("PATCH", "racks/lab/r02", {"name": "r03"}).json()["name"] == "r03"
    assert audited("inventory.rack.change", "lab/r03").details["changes"] == {"name": ["r02", "r03"]}
    assert admin("DELETE", "racks/lab/r03").status_code == 204
    assert admin("GET", "racks/lab/r03").status_code == 404


def test_a_machine_with_nics_and_bmc_in_one_body_and_its_password_never_shown(api, scene):
    admin = api["admin"]
    body = {
        "hostname": "web-07",
        "rack": "lab/r01",
        "position_u": 5,
        "height_u": 2,
        "serial": "SN7",
        "vendor": "Dell",
        "nics": [{"mac": "52-54-00-AA-BB-07", "is_pxe": True, "name": "port 1"}, {"mac": "5254.00aa.bb08"}],
        "bmc": {"driver": "fake", "address": "10.0.0.57", "username": "root", "password": PASSWORD},
    }
    created = admin("POST", "machines", body)
    assert created.status_code == 201, created.text
    machine = created.json()
    assert machine["rack"] == "lab/r01" and machine["position_u"] == 5
    assert [n["mac"] for n in machine["nics"]] == ["52:54:00:aa:bb:07", "52:54:00:aa:bb:08"]
    assert machine["bmc"] == {"driver": "fake", "address": "10.0.0.57", "port": 623, "username": "root",
                              "password_set": True}  # fmt: skip
    assert Machine.objects.get(hostname="web-07").bmc.get_password() == PASSWORD
    for role in ("viewer", "admin"):
        for path in ("machines/web-07", "machines/web-07/bmc", "machines", "machines/web-07/nics", "openapi.json"):
            answer = api[role]("GET", path)
            assert answer.status_code == 200 and PASSWORD not in answer.text, (role, path)
    actions = set(AuditEntry.objects.filter(actor_label="admin-api").values_list("action", flat=True))
    assert {"inventory.machine.add", "inventory.nic.add", "inventory.bmc.add"} <= actions
    assert audited("inventory.bmc.add", "BMC of web-07 (10.0.0.57)").details["changes"]["password"] == "changed"
    assert PASSWORD not in json.dumps(list(AuditEntry.objects.values_list("details", flat=True)))
    spec = api["viewer"]("GET", "openapi.json").json()["components"]["schemas"]
    assert spec["BmcIn"]["properties"]["password"]["writeOnly"] is True

    changed = admin("PATCH", "machines/web-07", {"rack": "lab/r01", "position_u": 9, "model": "R650"})
    assert changed.status_code == 200 and changed.json()["position_u"] == 9
    assert admin("DELETE", "machines/web-07").status_code == 204
    assert not NIC.objects.filter(mac="52:54:00:aa:bb:07").exists()
    assert audited("inventory.machine.delete", "web-07").details["was"]["hostname"] == "web-07"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"nics": [{"mac": "52:54:00:zz:00:01"}]}, "nics.0.mac"),
        ({"nics": [{"mac": "ff:ff:ff:ff:ff:ff"}]}, "nics.0.mac"),
        ({"hostname": "busy-01"}, "hostname"),
        ({"position_u": 2}, "position_u"),  # U2-U3 overlaps idle-01 at U3
        ({"rack": "lab/r99"}, "rack"),
        ({"hostname": "Bad_Name"}, "hostname"),
        ({"nics": [{"mac": "52:54:00:00:00:01", "is_pxe": True}, {"mac": "52:54:00:00:00:02", "is_pxe": True}]},
         "nics.1.is_pxe"),
        ({"nics": [{"mac": "52:54:00:00:00:01"}, {"mac": "52-54-00-00-00-01"}]}, "nics.1.mac"),
        ({"bmc": {"address": "10.0.0.300"}}, "bmc.address"),
        ({"bmc": {"address": "10.0.0.3", "driver": "nope"}}, "bmc.driver"),
        ({"bmc": {"address": "10.0.0.3", "secret": "x"}}, "bmc.secret"),
        ({"owner": "me"}, "owner"),
        ({"depth": "middle"}, "depth"),
    ],
)
def test_bad_machine_input_is_a_400_naming_the_field_and_writes_nothing(api, scene, change, field):
    body = {"hostname": "new-01", "rack": "lab/r01", "position_u": 7, "height_u": 2, **change}
    before = inventory()
    response = api["admin"]("POST", "machines", body)
    assert refused_cleanly(response, 400, field, before), response.text


def test_half_depth_machines_on_opposite_faces_share_a_unit_through_the_api(api, scene):
    admin = api["admin"]
    front = admin("POST", "machines", {"hostname": "half-f", "rack": "lab/r01", "position_u": 11, "depth": "front"})
    assert front.status_code == 201, front.text
    assert front.json()["depth"] == "front"
    rear = admin("POST", "machines", {"hostname": "half-r", "rack": "lab/r01", "position_u": 11, "depth": "rear"})
    assert rear.status_code == 201, rear.text
    before = inventory()
    turned = admin("PATCH", "machines/half-r", {"depth": "front"})
    assert refused_cleanly(turned, 400, "position_u", before)
    assert "overlaps half-f, which occupies U11 at the front" in turned.json()["detail"]
    assert admin("GET", "machines/half-r").json()["depth"] == "rear"


def test_a_mac_another_machine_has_is_refused_by_name(api, scene):
    before, taken = inventory(), scene.busy.pxe_nic.mac
    response = api["admin"]("POST", f"machines/{scene.idle.hostname}/nics", {"mac": taken.upper()})
    assert refused_cleanly(response, 400, "mac", before)
    assert f"already a NIC of {scene.busy.hostname}" in response.json()["detail"]


def test_nics_are_added_changed_by_mac_or_name_and_one_pxe_nic_is_enforced(api, scene):
    admin, host = api["admin"], scene.idle.hostname
    added = admin("POST", f"machines/{host}/nics", {"mac": "AA:BB:CC:00:11:22", "name": "port 2"})
    assert added.status_code == 201 and added.json()["mac"] == "aa:bb:cc:00:11:22"
    before = inventory()
    second_pxe = admin("PATCH", f"machines/{host}/nics/port 2", {"is_pxe": True})
    assert refused_cleanly(second_pxe, 400, "is_pxe", before), second_pxe.text
    changed = admin("PATCH", f"machines/{host}/nics/aa-bb-cc-00-11-22", {"ip": "192.0.2.7", "prefix_len": 24})
    assert changed.status_code == 200 and changed.json()["ip"] == "192.0.2.7"
    assert audited("inventory.nic.change", "aa:bb:cc:00:11:22 (port 2)").details["changes"]["ip"] == [None, "192.0.2.7"]
    assert api["technician"]("DELETE", f"machines/{host}/nics/port 2").status_code == 403
    assert admin("DELETE", f"machines/{host}/nics/port 2").status_code == 204
    assert admin("DELETE", f"machines/{host}/nics/port 2").status_code == 404
    assert [n["mac"] for n in api["viewer"]("GET", f"machines/{host}/nics").json()["results"]] == [
        scene.idle.pxe_nic.mac
    ]


def test_the_bmc_is_put_and_patched_with_a_write_only_password(api, scene):
    admin, host = api["admin"], scene.idle.hostname
    put = admin("PUT", f"machines/{host}/bmc", {"driver": "fake", "address": "bmc-idle.example.net"})
    assert put.status_code == 200 and put.json() == {
        "driver": "fake", "address": "bmc-idle.example.net", "port": 623, "username": "", "password_set": True
    }  # fmt: skip
    patched = admin("PATCH", f"machines/{host}/bmc", {"password": PASSWORD, "port": 6230})
    assert patched.status_code == 200 and patched.json()["password_set"] is True and PASSWORD not in patched.text
    assert BMC.objects.get(machine=scene.idle).get_password() == PASSWORD
    assert audited("inventory.bmc.change", "BMC of idle-01 (bmc-idle.example.net)").details["changes"] == {
        "port": [623, 6230], "password": "changed"
    }  # fmt: skip
    cleared = admin("PATCH", f"machines/{host}/bmc", {"password": ""})
    assert cleared.json()["password_set"] is False
    before = inventory()
    assert refused_cleanly(admin("PATCH", f"machines/{host}/bmc", {"port": 0}), 400, "port", before)
    assert refused_cleanly(api["technician"]("PATCH", f"machines/{host}/bmc", {"port": 1}), 403, None, before)
    assert api["viewer"]("GET", f"machines/{host}/bmc").json()["password_set"] is False
    assert PASSWORD not in json.dumps(list(AuditEntry.objects.values_list("details", flat=True)))


def test_a_protected_machine_or_one_with_installs_is_not_deleted(api, scene):
    admin = api["admin"]
    scene.failed.finished_at = scene.failed.created_at  # as the engine ends it
    scene.failed.save(update_fields=["finished_at"])
    Machine.objects.filter(pk=scene.idle.pk).update(protected=True)
    before = inventory()
    refusal = admin("DELETE", f"machines/{scene.idle.hostname}")
    assert refused_cleanly(refusal, 409, None, before)
    assert any("protected" in p for p in refusal.json()["problems"])
    assert any("install(s) in its history" in p for p in refusal.json()["problems"])
    running = admin("DELETE", f"machines/{scene.busy.hostname}")
    assert refused_cleanly(running, 409, None, before) and "install is running" in running.json()["problems"][0]


TEMPLATE = "d-i netcfg/get_hostname string {{ hostname }}\n"


def test_profiles_are_written_with_the_template_checked_and_deleted_only_when_unused(api, scene):
    admin = api["admin"]
    body = {"name": "debian-13", "method": "preseed", "kernel": "/d/linux", "initrd": "/d/initrd.gz",
            "template": TEMPLATE, "root_password_hash": "$6$salt$hash"}  # fmt: skip
    created = admin("POST", "profiles", body)
    assert created.status_code == 201, created.text
    assert created.json()["root_password_hash_set"] is True and "$6$salt$hash" not in created.text
    before = inventory()
    broken = admin("PATCH", "profiles/debian-13", {"template": "line one\n{{ hostname }\n"})
    assert refused_cleanly(broken, 400, "template", before), broken.text
    assert broken.json()["errors"][0]["line"] == 2
    unknown = admin("PATCH", "profiles/debian-13", {"template": "{{ no_such_variable }}"})
    assert refused_cleanly(unknown, 400, "template", before)
    assert admin("PATCH", "profiles/debian-13", {"description": "trixie"}).json()["description"] == "trixie"
    page = api["viewer"]("GET", "profiles", per_page=2)
    assert page.json()["per_page"] == 2 and page.json()["count"] == OSProfile.objects.count()
    before = inventory()
    in_use = admin("DELETE", f"profiles/{scene.profile.name}")
    assert refused_cleanly(in_use, 409, None, before) and "not finished use" in in_use.json()["problems"][0]
    assert admin("DELETE", "profiles/debian-13").status_code == 204
    assert audited("inventory.osprofile.delete", "debian-13").details["was"]["description"] == "trixie"


def test_a_workflow_is_deleted_unless_stock_or_in_use(api, scene):
    admin = api["admin"]
    before = inventory()
    assert refused_cleanly(admin("DELETE", "workflows/stock-installer"), 409, None, before)
    assert refused_cleanly(api["technician"]("DELETE", "workflows/scene-flow"), 403, None, before)
    OSProfile.objects.filter(pk=scene.profile.pk).update(workflow="scene-flow")
    used = admin("DELETE", "workflows/scene-flow")
    assert used.status_code == 409 and "debian-12-preseed run workflow scene-flow" in used.json()["problems"][0]
    OSProfile.objects.filter(pk=scene.profile.pk).update(workflow="")
    assert admin("DELETE", "workflows/scene-flow").status_code == 204
    assert admin("GET", "workflows/scene-flow").status_code == 404
    assert AuditEntry.objects.get(action="workflow.delete").details["versions"] == [1]


def test_a_trailing_slash_reaches_every_method_of_a_shared_path(api):
    """GET, POST, PATCH and DELETE on one path are one view; the slashed route must reach each of them."""
    admin = api["admin"]
    body = {"slug": "dc9", "name": "DC 9", "tftp_root": "/srv/tftp/dc9", "base_url": "http://10.9.0.1:8000"}
    assert admin("POST", "sites/", body).status_code == 201
    assert "dc9" in [s["slug"] for s in admin("GET", "sites/").json()["results"]]
    assert admin("PATCH", "sites/dc9/", {"domain": "dc9.example.net"}).json()["domain"] == "dc9.example.net"
    assert admin("DELETE", "sites/dc9/").status_code == 204
    assert not Site.objects.filter(slug="dc9").exists()
