"""Bulk machine import: every row problem named with its row and column, export -> import round-trips with no
changes, apply writes every row or none, one audit entry, and a BMC password never shown back."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEntry
from audit.service import Actor
from inventory import import_format, importing
from inventory.models import BMC, NIC, Machine, Rack
from tests.conftest import make_bmc, make_machine, make_rack, make_site

pytestmark = pytest.mark.django_db

HEADER = ",".join(c for c in import_format.COLUMNS if c not in ("bmc_port", "depth"))
PASSWORD = "imp0rted-bmc-secret"
ACTOR = Actor.system("test")


def csv_of(*lines: str, header: str = HEADER) -> str:
    return "\n".join([header, *lines]) + "\n"


@pytest.fixture
def rack():
    return make_rack(make_site(slug="dc1"), name="r01", height_u=42)


def problems_of(text: str, **kw) -> set[tuple[int, str]]:
    result = importing.plan(text, **kw)
    assert not result.ok
    return {(p.row, p.column) for p in result.problems}


def test_preview_shows_creates_and_changes_and_apply_writes_them_under_one_audit_entry(rack):
    existing = make_machine(rack, hostname="old-1", position_u=10, with_nic=False, vendor="Dell")
    text = csv_of(
        f"dc1,r01,new-1,1,2,SN1,HPE,DL380,*eno1=52:54:00:aa:00:01@10.0.0.5/24; eno2=52-54-00-AA-00-02,ipmi,"
        f"10.1.0.5,admin,{PASSWORD}",
        "dc1,r01,old-1,10,1,,Lenovo,,,,,,",
    )
    preview = importing.plan(text)
    assert preview.ok, preview.problems
    new, old = preview.rows
    assert (new.action, old.action) == ("create", "change")
    assert old.changes == {"vendor": ("Dell", "Lenovo")}
    assert new.changes == {}
    assert Machine.objects.count() == 1  # a preview writes nothing

    importing.apply(text, actor=ACTOR, expect=preview.digest)
    machine = Machine.objects.get(hostname="new-1")
    assert (machine.rack, machine.position_u, machine.height_u, machine.vendor) == (rack, 1, 2, "HPE")
    nics = {n.mac: n for n in machine.nics.all()}
    assert nics["52:54:00:aa:00:01"].is_pxe and nics["52:54:00:aa:00:01"].ip == "10.0.0.5"
    assert not nics["52:54:00:aa:00:02"].is_pxe
    assert machine.bmc.get_password() == PASSWORD and machine.bmc.address == "10.1.0.5"
    existing.refresh_from_db()
    assert existing.vendor == "Lenovo"
    entry = AuditEntry.objects.get(action="inventory.import")
    assert entry.details["created"] == 1 and entry.details["changed"] == 1
    assert [(r["hostname"], r["action"]) for r in entry.details["rows"]] == [("new-1", "create"), ("old-1", "change")]
    assert PASSWORD not in json.dumps(entry.details) + entry.object_label


def test_each_row_problem_is_named_with_its_row_and_column(rack):
    other = make_rack(rack.site, name="r02")
    make_machine(other, hostname="elsewhere", position_u=1)
    make_machine(rack, hostname="sitting", position_u=20, height_u=2, with_nic=False)
    taken = make_machine(rack, hostname="nic-owner", position_u=30)
    taken_mac = taken.nics.get().mac
    text = csv_of(
        "dc1,r01,bad-mac,1,1,,,,*eth0=52:54:00:zz:00:01,,,,",  # row 2
        "dc1,r01,twice,2,1,,,,,,,,",  # row 3
        "dc1,r01,twice,3,1,,,,,,,,",  # row 4: hostname twice in the file
        "dc1,r01,elsewhere,4,1,,,,,,,,",  # row 5: in inventory in another rack
        "dc1,r01,overlaps-inventory,21,1,,,,,,,,",  # row 6: U21 is sitting's
        "dc1,r01,overlaps-row,2,1,,,,,,,,",  # row 7: U2 is row 3's
        "dc1,r99,no-rack,1,1,,,,,,,,",  # row 8
        "nosite,r01,no-site,1,1,,,,,,,,",  # row 9
        "dc1,r01,bad-bmc,5,1,,,,,ipmi,10.0.0.300,,",  # row 10
        "dc1,r01,bad-number,six,1,,,,,,,,",  # row 11
        f"dc1,r01,mac-taken,7,1,,,,{taken_mac},,,,",  # row 12
        "dc1,r01,too-high,42,2,,,,,,,,",  # row 13
        "dc1,r01,,8,1,,,,,,,,",  # row 14: no hostname
        "dc1,r01,no-ip-prefix,9,1,,,,eth0=52:54:00:aa:00:09@10.0.0.9,,,,",  # row 15
    )
    result = importing.plan(text)
    found = {(p.row, p.column) for p in result.problems}
    assert found == {
        (2, "nics"),
        (4, "hostname"),
        (5, "rack"),
        (6, "position_u"),
        (7, "position_u"),
        (8, "rack"),
        (9, "site"),
        (10, "bmc_address"),
        (11, "position_u"),
        (12, "nics"),
        (13, "position_u"),
        (14, "hostname"),
        (15, "nics"),
    }
    messages = {(p.row, p.column): p.message for p in result.problems}
    assert "52:54:00:zz:00:01" in messages[(2, "nics")]
    assert "overlaps sitting (in inventory)" in messages[(6, "position_u")]
    assert "overlaps twice (row 3)" in messages[(7, "position_u")]
    assert "nic-owner" in messages[(12, "nics")]
    assert "10.0.0.300" in messages[(10, "bmc_address")]


def test_header_problems_are_on_row_one_and_a_missing_rack_can_be_made(rack):
    assert problems_of("site,rack,position_u,colour\ndc1,r01,1,red\n") >= {(1, "hostname"), (1, "colour")}
    assert problems_of("hostname,serial\nh-1,S1\nh-2,S2,oops\n") == {(3, import_format.EXTRA)}
    text = "site,rack,hostname,position_u\ndc1,r07,made,1\n"
    assert problems_of(text) == {(2, "rack")}
    importing.apply(text, actor=ACTOR, create_racks=True)
    assert Machine.objects.get(hostname="made").rack == Rack.objects.get(site=rack.site, name="r07")


def test_one_bad_row_means_nothing_is_written(rack):
    text = csv_of("dc1,r01,good-1,1,1,,,,52:54:00:bb:00:01,,,,", "dc1,r01,bad-1,2,1,,,,not-a-mac,,,,")
    with pytest.raises(importing.ImportRefused) as refused:
        importing.apply(text, actor=ACTOR, create_racks=True)
    assert [(p.row, p.column) for p in refused.value.plan.problems] == [(3, "nics")]
    assert not Machine.objects.exists() and not NIC.objects.exists()
    assert not AuditEntry.objects.filter(action="inventory.import").exists()


def test_export_then_import_is_no_change_in_every_format(rack):
    machine = make_machine(rack, hostname="rt-1", position_u=3, height_u=2, serial="-5 leading dash", vendor="=x")
    NIC.objects.create(machine=machine, name="port 2", mac="52:54:00:cc:00:02", ip="fe80::2", prefix_len=64)
    make_bmc(machine, driver="ipmi", address="bmc.rt-1.example", username="root")
    make_machine(rack, hostname="rt-2", position_u=10)
    for file_format in import_format.FORMATS:
        text = import_format.write(importing.export_rows(), file_format)
        assert PASSWORD not in text and "s3cret-bmc-pw" not in text
        result = importing.plan(text, file_format)
        assert result.ok, result.problems
        assert [r.action for r in result.rows] == ["unchanged", "unchanged"], [r.changes for r in result.rows]


def test_a_password_in_the_file_is_never_shown_back(rack, capsys):
    machine = make_machine(rack, hostname="pw-1", position_u=1, with_nic=False)
    make_bmc(machine, driver="ipmi", address="10.2.0.1", username="root")
    text = csv_of(f"dc1,r01,pw-1,1,1,,,,,ipmi,10.2.0.1,root,{PASSWORD}")
    summary = importing.summary(importing.plan(text))
    assert summary["rows"][0]["changes"] == {"bmc_password": {"old": "", "new": importing.PASSWORD_SET}}
    assert PASSWORD not in json.dumps(summary)
    bad = csv_of(f"dc1,r01,pw-1,1,1,,,,,ipmi,999.1.1.1,root,{PASSWORD}")
    assert PASSWORD not in json.dumps(importing.summary(importing.plan(bad)))
    importing.apply(text, actor=ACTOR)
    assert BMC.objects.get(machine=machine).get_password() == PASSWORD
    assert PASSWORD not in json.dumps(AuditEntry.objects.get(action="inventory.import").details)


def test_machines_trade_places_and_a_mac_moves_between_them_in_one_file(rack):
    a = make_machine(rack, hostname="swap-a", position_u=1, with_nic=False)
    b = make_machine(rack, hostname="swap-b", position_u=2, with_nic=False)
    NIC.objects.create(machine=a, mac="52:54:00:dd:00:01", is_pxe=True)
    text = "site,rack,hostname,position_u,nics\ndc1,r01,swap-a,2,\ndc1,r01,swap-b,1,*52:54:00:dd:00:01\n"
    importing.apply(text, actor=ACTOR)
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.position_u, b.position_u) == (2, 1)
    assert NIC.objects.get(mac="52:54:00:dd:00:01").machine == b


def test_yaml_and_json_bodies_and_unreadable_files():
    assert importing.plan("- hostname: y-1\n  nics: ['*52:54:00:ee:00:01']\n", "yaml").rows[0].action == "create"
    assert importing.plan('{"machines": [{"hostname": "j-1", "height_u": 2}]}', "json").ok
    unreadable = [(b"\xff\xfe", "csv"), ("{not json", "json"), ('{"a": 1}', "json"), ("", "csv"), ("[" * 5000, "json")]
    for data, file_format in unreadable:
        with pytest.raises(import_format.FileRefused):
            importing.plan(data, file_format)


def test_commands_preview_apply_and_export(rack, tmp_path, capsys):
    path = tmp_path / "machines.csv"
    path.write_text(csv_of(f"dc1,r01,cli-1,1,1,,,,,ipmi,10.3.0.1,root,{PASSWORD}"))
    call_command("import_machines", str(path))
    assert not Machine.objects.exists()
    call_command("import_machines", str(path), "--apply")
    assert Machine.objects.filter(hostname="cli-1").exists()
    call_command("export_machines", "--format", "json")
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert json.loads(out[out.index("[") :])[0]["hostname"] == "cli-1"
    path.write_text(csv_of("dc1,r01,cli-2,1,1,,,,,,,,"))
    with pytest.raises(CommandError):
        call_command("import_machines", str(path), "--apply")


def test_half_depth_machines_on_opposite_faces_share_a_unit_and_the_same_face_is_refused(rack):
    make_machine(rack, hostname="front-1", position_u=5, depth="front", with_nic=False)
    text = "site,rack,hostname,position_u,depth\ndc1,r01,rear-1,5,rear\ndc1,r01,rear-2,5,Rear\n"
    assert problems_of(text) == {(3, "position_u")}
    message = importing.plan(text).problems[0].message
    assert message == "U5 in rack dc1/r01 overlaps rear-1 (row 2), which occupies U5"
    importing.apply(text.rsplit("dc1,r01,rear-2", 1)[0], actor=ACTOR)
    assert Machine.objects.get(hostname="rear-1").depth == "rear"
    assert problems_of("site,rack,hostname,position_u,depth\ndc1,r01,full-1,5,\n") == {(2, "position_u")}
    assert problems_of("hostname,depth\nfront-1,middle\n") == {(2, "depth")}
    exported = import_format.write(importing.export_rows(), "csv")
    assert "front-1,5,1,front" in exported and "rear-1,5,1,rear" in exported
    assert [r.action for r in importing.plan(exported).rows] == ["unchanged", "unchanged"]
