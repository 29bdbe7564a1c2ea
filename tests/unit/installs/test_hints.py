"""Disk hints resolved against the facts an agent registers with, and the hints refused as malformed."""

import pytest

from installs.hints import HintError, check, describe, literal_paths, parse_size, resolve

GB, GiB, TB = 10**9, 2**30, 10**12

DISKS = [
    {"name": "sdb", "path": "/dev/sdb", "size_bytes": 4 * TB, "model": "ST4000NM", "vendor": "SEAGATE",
     "serial": "ZC1", "wwn": "0x5000c500aaaa0001", "rotational": True},
    {"name": "nvme0n1", "path": "/dev/nvme0n1", "size_bytes": 960 * GB, "model": "SAMSUNG MZQL2960HCJR",
     "serial": "S64F1", "wwn": "eui.0025388b11111111", "rotational": False},
    {"name": "sda", "path": "/dev/sda", "size_bytes": 4 * TB, "model": "ST4000NM", "vendor": "SEAGATE",
     "serial": "ZC2", "wwn": "0x5000c500aaaa0002", "rotational": True},
    {"name": "nvme1n1", "path": "/dev/nvme1n1", "size_bytes": 960 * GB, "model": "SAMSUNG MZQL2960HCJR",
     "serial": "S64F2", "wwn": "eui.0025388b22222222", "rotational": False},
    {"name": "sdc", "path": "/dev/sdc", "size_bytes": 240 * GB, "model": "INTEL SSDSC2KB240G8",
     "serial": "BTYF3", "rotational": False},
]  # fmt: skip


@pytest.mark.parametrize(
    "text, expected",
    [
        ("500GiB", ("==", 500 * GiB)),
        ("500 GB", ("==", 500 * GB)),
        ("1.5TiB", ("==", int(1.5 * 2**40))),
        (">=100GB", (">=", 100 * GB)),
        ("<= 2T", ("<=", 2 * 2**40)),
        ("> 1tb", (">", TB)),
        ("<4096", ("<", 4096)),
        ("==960GB", ("==", 960 * GB)),
        (1024, ("==", 1024)),
    ],
)
def test_sizes_take_units_and_operators(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["big", "500 parsecs", "=>1GB", "", "GB", True, ">= -1GB"])
def test_sizes_that_are_not_sizes_are_refused(text):
    with pytest.raises(HintError, match="size: .* is not a size"):
        parse_size(text)


def test_a_bare_size_matches_within_one_percent_either_way():
    # Sold as 960 GB; a hint written as 894GiB (960 GB in binary units, rounded) must still find them.
    assert resolve({"size": "894GiB", "all": True}, DISKS) == ["/dev/nvme0n1", "/dev/nvme1n1"]
    assert resolve({"size": "960GB", "all": True}, DISKS) == ["/dev/nvme0n1", "/dev/nvme1n1"]
    assert resolve({"size": f"{int(960 * GB * 1.0099)}"}, DISKS) == ["/dev/nvme0n1"]
    with pytest.raises(HintError):
        resolve({"size": f"{int(960 * GB * 1.0102)}"}, DISKS)
    with pytest.raises(HintError):
        resolve({"size": "==950GB"}, DISKS)


def test_size_operators_choose_smallest_first():
    assert resolve({"size": ">=1TB", "all": True}, DISKS) == ["/dev/sda", "/dev/sdb"]
    assert resolve({"size": "<1TB", "all": True}, DISKS) == ["/dev/sdc", "/dev/nvme0n1", "/dev/nvme1n1"]
    assert resolve({"size": ">240GB"}, DISKS) == ["/dev/nvme0n1"]
    assert resolve({"size": "<=240GB"}, DISKS) == ["/dev/sdc"]


def test_a_name_is_a_glob_on_the_kernel_name_or_on_the_dev_path():
    assert resolve({"name": "sd*", "all": True}, DISKS) == ["/dev/sdc", "/dev/sda", "/dev/sdb"]
    assert resolve({"name": "nvme?n1", "count": 2}, DISKS) == ["/dev/nvme0n1", "/dev/nvme1n1"]
    assert resolve({"name": "/dev/sdb"}, DISKS) == ["/dev/sdb"]
    assert resolve({"name": "/dev/nvme*", "all": True}, DISKS) == ["/dev/nvme0n1", "/dev/nvme1n1"]
    with pytest.raises(HintError):
        resolve({"name": "SDA"}, DISKS)  # case matters: kernel names are lower case


def test_a_disk_without_a_name_is_named_by_its_path():
    disks = [{"path": "/dev/vda", "size_bytes": 10 * GiB}]
    assert resolve({"name": "vd*"}, disks) == ["/dev/vda"]


def test_model_and_vendor_are_case_insensitive_substrings():
    assert resolve({"model": "mzql2960", "all": True}, DISKS) == ["/dev/nvme0n1", "/dev/nvme1n1"]
    assert resolve({"vendor": "seagate", "count": 2}, DISKS) == ["/dev/sda", "/dev/sdb"]
    assert resolve({"model": "intel"}, DISKS) == ["/dev/sdc"]


def test_serial_and_wwn_match_exactly():
    assert resolve({"serial": "ZC1"}, DISKS) == ["/dev/sdb"]
    assert resolve({"wwn": "eui.0025388b22222222"}, DISKS) == ["/dev/nvme1n1"]
    for hint in ({"serial": "zc1"}, {"serial": "ZC"}, {"wwn": "0x5000c500aaaa000"}):
        with pytest.raises(HintError):
            resolve(hint, DISKS)


def test_rotational_chooses_spinning_or_solid_state_disks():
    assert resolve({"rotational": True, "all": True}, DISKS) == ["/dev/sda", "/dev/sdb"]
    assert resolve({"rotational": False, "all": True}, DISKS) == ["/dev/sdc", "/dev/nvme0n1", "/dev/nvme1n1"]
    # A disk that did not say is neither.
    with pytest.raises(HintError):
        resolve({"rotational": False}, [{"path": "/dev/vda", "size_bytes": 1}, DISKS[0]])


def test_every_key_must_match():
    assert resolve({"rotational": False, "size": ">500GB", "all": True}, DISKS) == ["/dev/nvme0n1", "/dev/nvme1n1"]
    assert resolve({"vendor": "SEAGATE", "serial": "ZC2"}, DISKS) == ["/dev/sda"]
    with pytest.raises(HintError):
        resolve({"model": "ST4000", "rotational": False}, DISKS)


def test_all_takes_every_disk_in_a_stable_order_by_size_then_name():
    everything = ["/dev/sdc", "/dev/nvme0n1", "/dev/nvme1n1", "/dev/sda", "/dev/sdb"]
    assert resolve({"all": True}, DISKS) == everything
    assert resolve({"all": True}, list(reversed(DISKS))) == everything
    # Disks the agent saw without a device path cannot be written to: never chosen.
    assert resolve({"all": True}, [*DISKS, {"name": "loop0", "size_bytes": 1}]) == everything


def test_count_takes_that_many_of_the_matches_smallest_first_whatever_the_facts_order():
    assert resolve({"count": 2}, DISKS) == ["/dev/sdc", "/dev/nvme0n1"]
    assert resolve({"rotational": False, "size": ">500GB", "count": 1}, list(reversed(DISKS))) == ["/dev/nvme0n1"]
    assert resolve({"all": True, "count": 3}, list(reversed(DISKS))) == ["/dev/sdc", "/dev/nvme0n1", "/dev/nvme1n1"]


def test_a_hint_without_all_or_count_takes_one_disk():
    assert resolve({"rotational": True}, DISKS) == ["/dev/sda"]


def test_a_hint_that_matches_nothing_lists_the_machines_disks():
    with pytest.raises(HintError) as exc:
        resolve({"model": "MICRON"}, DISKS[:2], where="wipe_disks.disks")
    assert str(exc.value) == (
        "wipe_disks.disks: no disk matches {model: 'MICRON'}; the machine has: "
        "/dev/sdb (3725 GiB, ST4000NM, serial ZC1, wwn 0x5000c500aaaa0001, rotational); "
        "/dev/nvme0n1 (894 GiB, SAMSUNG MZQL2960HCJR, serial S64F1, wwn eui.0025388b11111111, solid-state)"
    )


def test_too_few_matches_for_the_count_is_no_match():
    with pytest.raises(HintError) as exc:
        resolve({"rotational": True, "count": 3}, DISKS, where="storage.disks")
    assert str(exc.value).startswith(
        "storage.disks: only 2 of the 3 disks wanted match {rotational: True, count: 3}; the machine has: /dev/sdb ("
    )


def test_a_machine_without_disks_says_so():
    with pytest.raises(HintError, match="the machine has: the machine reported no disks$"):
        resolve({"all": True}, [])
    assert describe([{"path": "/dev/vda"}]) == "/dev/vda (size unknown)"


@pytest.mark.parametrize(
    "hint, message",
    [
        ("sda", "hint: a disk hint is a mapping such as {rotational: false, count: 2}"),
        ({}, "hint: a disk hint is a mapping such as {rotational: false, count: 2}"),
        ({"colour": "red"}, "hint: unknown key 'colour'; a hint has name, size, model, vendor, serial, wwn, "
         "rotational, all, count"),
        ({"name": ""}, "hint.name: a non-empty string is required"),
        ({"serial": 1234}, "hint.serial: a non-empty string is required"),
        ({"size": "huge"}, "hint.size: 'huge' is not a size such as 500GiB, >=100GB or <2TiB"),
        ({"size": True}, "hint.size: True is not a size"),
        ({"rotational": "no"}, "hint.rotational: true or false"),
        ({"all": 1}, "hint.all: true or false"),
        ({"count": 0}, "hint.count: a whole number of at least 1"),
        ({"count": True}, "hint.count: a whole number of at least 1"),
        ({"count": "2"}, "hint.count: a whole number of at least 1"),
    ],
)  # fmt: skip
def test_malformed_hints_are_refused_naming_the_key(hint, message):
    with pytest.raises(HintError) as exc:
        check(hint)
    assert str(exc.value) == message
    with pytest.raises(HintError):
        resolve(hint, DISKS)


def test_a_hint_naming_one_dev_path_needs_no_facts():
    assert literal_paths({"name": "/dev/sdb"}) == ["/dev/sdb"]
    assert literal_paths({"name": "/dev/sd*"}) is None
    assert literal_paths({"name": "sdb"}) is None
    assert literal_paths({"name": "/dev/sdb", "rotational": True}) is None
