"""Disk layouts: each renderer on its own, golden files, and every layout through the installers' validators
(pykickstart's parser and ksvalidator, debconf-set-selections, curtin's storage rules) inside the stock
answer files."""

import itertools
import json
import re
import warnings

import pytest
from pykickstart.errors import KickstartDeprecationWarning, KickstartParseError, KickstartParseWarning
from pykickstart.parser import KickstartParser
from pykickstart.version import makeVersion

from provisioner.pxe import Layout, render_template
from provisioner.pxe.stock import stock_profile
from provisioner.pxe.storage import autoinstall, autoinstall_yaml, kickstart, partition, preseed, single
from tests.unit.pxe.support import KSVALIDATOR, assert_golden, cloud_init_tool, context, run

CHECK_SCRIPT = __file__.replace("test_storage.py", "curtin_storage_check.py")
DEVICES = {"single": ("/dev/sda",), "raid1": ("/dev/sda", "/dev/sdb"), "raid10": ("/dev/sda", "/dev/sdb",
                                                                               "/dev/sdc", "/dev/sdd")}  # fmt: skip


def every_layout() -> list[Layout]:
    return [
        Layout(kind, DEVICES[kind], lvm=lvm, efi=efi, swap_mib=swap, filesystem=fs)
        for kind, lvm, efi, swap, fs in itertools.product(
            ("single", "raid1", "raid10"), (False, True), (False, True), (0, 2048), ("ext4",)
        )
    ] + [Layout("raid1", DEVICES["raid1"], filesystem="xfs"), Layout("single", ("/dev/nvme0n1",), filesystem="btrfs")]


LAYOUTS = every_layout()


def layout_id(layout: Layout) -> str:
    return "-".join(
        [layout.kind, "lvm" if layout.lvm else "plain", "efi" if layout.efi else "bios", f"swap{layout.swap_mib}",
         layout.filesystem]
    )  # fmt: skip


def stock(profile: str, layout: Layout) -> str:
    return render_template(stock_profile(profile)["template"], context(storage=layout))


# --- the layout itself ---


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "raid1", "devices": ("/dev/sda",)}, "raid1 needs at least 2 devices, got 1"),
        ({"kind": "raid10", "devices": ("/dev/sda", "/dev/sdb")}, "raid10 needs an even number of devices, at least 4"),
        ({"kind": "raid10", "devices": tuple(f"/dev/sd{c}" for c in "abcde")}, "got 5"),
        ({"kind": "single", "devices": ("/dev/sda", "/dev/sdb")}, "single needs exactly 1 device, got 2"),
        ({"kind": "single", "devices": ()}, "single needs exactly 1 device, got 0"),
        ({"kind": "raid5", "devices": ("/dev/sda",)}, "kind must be one of single, raid1, raid10, not 'raid5'"),
        ({"kind": "raid1", "devices": ("/dev/sda", "sdb")}, "a device must be a /dev path, not 'sdb'"),
        ({"kind": "raid1", "devices": ("/dev/sda", "/dev/sda")}, "named twice"),
        ({"devices": ("/dev/sda",), "filesystem": "zfs"}, "filesystem must be one of ext4, xfs, btrfs, not 'zfs'"),
        ({"devices": ("/dev/sda",), "swap_mib": -1}, "swap_mib must be a whole number"),
        ({"devices": ("/dev/sda",), "swap_mib": True}, "swap_mib must be a whole number"),
    ],
)
def test_bad_layouts_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Layout(**kwargs)


def test_partition_paths():
    assert partition("/dev/sda", 2) == "/dev/sda2"
    assert partition("/dev/nvme0n1", 2) == "/dev/nvme0n1p2"
    assert partition("/dev/md126", 1) == "/dev/md126p1"
    assert partition("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", 3) == "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4-part3"


def test_partition_numbers_are_the_same_on_every_member():
    assert Layout("raid1", DEVICES["raid1"]).partitions() == {"firmware": 1, "boot": 2, "root": 3}
    assert Layout("raid1", DEVICES["raid1"], swap_mib=512).partitions() == {
        "firmware": 1, "boot": 2, "swap": 3, "root": 4
    }  # fmt: skip
    # Swap in the volume group needs no partition.
    assert Layout("raid1", DEVICES["raid1"], swap_mib=512, lvm=True).partitions()["root"] == 3


# --- golden files: the renderers' whole output for three layouts ---

GOLDEN_LAYOUTS = {
    "single-default": single("/dev/sda"),
    "raid1-bios": Layout("raid1", DEVICES["raid1"]),
    "raid10-lvm-efi-swap": Layout("raid10", DEVICES["raid10"], lvm=True, efi=True, swap_mib=2048),
}


@pytest.mark.parametrize("name", GOLDEN_LAYOUTS)
def test_renderings_match_golden(name):
    layout = GOLDEN_LAYOUTS[name]
    text = f"# preseed\n{preseed(layout)}\n\n# kickstart\n{kickstart(layout)}\n\n# autoinstall\n"
    text += autoinstall_yaml(layout) + "\n"
    assert_golden(f"storage-{name}.txt", text)


# --- preseed ---


def debconf_values(text: str) -> dict[str, str]:
    joined = text.replace("\\\n", " ")
    values = {}
    for line in joined.splitlines():
        if line.startswith("d-i "):
            _, key, _kind, *value = line.split(None, 3)
            values[key] = re.sub(r"\s+", " ", value[0]).strip() if value else ""
    return values


def test_preseed_raid1_mirrors_boot_and_root_and_puts_grub_on_every_member():
    values = debconf_values(preseed(Layout("raid1", DEVICES["raid1"])))
    assert values["partman-auto/method"] == "raid"
    assert values["partman-auto/disk"] == "/dev/sda /dev/sdb"
    assert values["partman-auto-raid/recipe"] == (
        "1 2 0 ext4 /boot /dev/sda2#/dev/sdb2 . 1 2 0 ext4 / /dev/sda3#/dev/sdb3 ."
    )
    assert values["grub-installer/bootdev"] == "/dev/sda /dev/sdb"
    assert values["mdadm/boot_degraded"] == "true"
    assert "method{ biosgrub }" in values["partman-auto/expert_recipe"]
    assert values["partman-basicfilesystems/no_swap"] == "false"


def test_preseed_raid10_lvm_puts_the_volume_group_on_the_array_and_volumes_in_it():
    values = debconf_values(preseed(Layout("raid10", DEVICES["raid10"], lvm=True, swap_mib=1024, efi=True)))
    assert values["partman-auto-raid/recipe"].split(" . ") == [
        "1 4 0 ext4 /boot /dev/sda2#/dev/sdb2#/dev/sdc2#/dev/sdd2",
        "10 4 0 lvm - /dev/sda3#/dev/sdb3#/dev/sdc3#/dev/sdd3 .",
    ]
    assert values["partman-auto-lvm/new_vg_name"] == "vg0"
    recipe = values["partman-auto/expert_recipe"]
    assert "method{ efi }" in recipe and "biosgrub" not in recipe
    assert "$defaultignore{ } $lvmok{ } lv_name{ swap }" in recipe
    assert "$defaultignore{ } $lvmok{ } lv_name{ root }" in recipe
    assert "no_swap" not in preseed(Layout("raid10", DEVICES["raid10"], lvm=True, swap_mib=1024))


def test_preseed_single_without_lvm_is_regular_partitions():
    values = debconf_values(preseed(Layout("single", ("/dev/vda",), filesystem="xfs", swap_mib=512)))
    assert values["partman-auto/method"] == "regular"
    assert "partman-auto-raid/recipe" not in values
    recipe = values["partman-auto/expert_recipe"]
    assert "filesystem{ xfs } mountpoint{ / }" in recipe and "method{ swap }" in recipe and "lvmok" not in recipe


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
def test_stock_preseed_passes_debconf_checkonly_for_every_layout(tmp_path, layout):
    path = tmp_path / "preseed.cfg"
    text = stock("debian-12-preseed", layout)
    path.write_text(text)
    result = run(["debconf-set-selections", "--checkonly", path])
    assert result.returncode == 0 and not result.stderr, result.stderr
    # A continuation line that lost its backslash would stand alone, starting with spaces.
    for before, line in itertools.pairwise(text.splitlines()):
        assert not line.startswith("    ") or before.endswith("\\"), line
    assert debconf_values(text)["partman-auto/disk"] == " ".join(layout.devices)


# --- kickstart ---


def parse_kickstart(text: str, version: str):
    handler = makeVersion(version)
    parser = KickstartParser(handler, errorsAreFatal=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KickstartDeprecationWarning)
        warnings.simplefilter("error", KickstartParseWarning)
        parser.readKickstartFromString(text)
    return handler


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
@pytest.mark.parametrize(("profile", "version"), [("rocky-9-kickstart", "RHEL9"), ("centos-7-kickstart", "RHEL7")])
def test_stock_kickstart_parses_for_every_layout(layout, profile, version):
    if layout.filesystem == "btrfs" and version == "RHEL9":
        # RHEL 9 dropped btrfs: the validator says so, as anaconda would.
        with pytest.raises(KickstartParseError, match="Btrfs file system is not supported"):
            parse_kickstart(stock(profile, layout), version)
        return
    handler = parse_kickstart(stock(profile, layout), version)
    names = [device.removeprefix("/dev/") for device in layout.devices]
    assert handler.ignoredisk.onlyuse == names
    assert handler.clearpart.drives == names
    mounts = {p.mountpoint for p in handler.partition.partitions} | {r.mountpoint for r in handler.raid.raidList}
    mounts |= {lv.mountpoint for lv in handler.logvol.lvList}
    firmware = "/boot/efi" if layout.efi else set() if layout.raid else "biosboot"
    assert {"/", "/boot"} | ({firmware} if firmware else set()) <= mounts
    assert handler.clearpart.disklabel == ("msdos" if layout.raid and not layout.efi else "gpt")
    assert ("swap" in mounts) == bool(layout.swap_mib)
    if layout.raid:
        levels = {r.mountpoint: (r.level, len(r.members)) for r in handler.raid.raidList}
        assert levels["/boot"] == ("RAID1", len(names))
        root = "pv.01" if layout.lvm else "/"
        assert levels[root] == (f"RAID{layout.level}", len(names))
        for raid in handler.raid.raidList:
            members = [p for p in handler.partition.partitions if p.mountpoint in raid.members]
            assert sorted(p.disk for p in members) == sorted(names), f"{raid.mountpoint} is not on every disk"


@pytest.mark.parametrize("layout", [GOLDEN_LAYOUTS["raid1-bios"], GOLDEN_LAYOUTS["raid10-lvm-efi-swap"]], ids=layout_id)
def test_stock_kickstart_passes_ksvalidator(tmp_path, layout):
    path = tmp_path / "ks.cfg"
    path.write_text(stock("rocky-9-kickstart", layout))
    result = run([KSVALIDATOR, "-e", "-v", "RHEL9", path])
    assert result.returncode == 0, result.stdout + result.stderr


def test_kickstart_parser_rejects_a_raid_level_anaconda_lacks():
    text = stock("rocky-9-kickstart", Layout("raid1", DEVICES["raid1"])).replace("--level=RAID1", "--level=RAID7")
    with pytest.raises(KickstartParseError, match="RAID7"):
        parse_kickstart(text, "RHEL9")


# --- autoinstall ---


def test_autoinstall_raid1_actions():
    config = autoinstall(Layout("raid1", DEVICES["raid1"]))["config"]
    by_id = {action["id"]: action for action in config}
    assert [a["path"] for a in config if a["type"] == "disk"] == list(DEVICES["raid1"])
    assert all(a.get("grub_device") for a in config if a["type"] == "disk")
    assert by_id["md0"]["raidlevel"] == 1 and by_id["md0"]["devices"] == ["disk0-part2", "disk1-part2"]
    assert by_id["md1"]["devices"] == ["disk0-part3", "disk1-part3"]
    mounts = {by_id[a["device"]]["volume"]: a["path"] for a in config if a["type"] == "mount"}
    assert mounts == {"md1": "/", "md0": "/boot"}
    assert autoinstall(Layout("raid1", DEVICES["raid1"]))["swap"] == {"size": 0}


def test_autoinstall_efi_gives_every_member_an_esp_marked_for_grub():
    config = autoinstall(Layout("raid1", DEVICES["raid1"], efi=True))["config"]
    esps = [a for a in config if a["type"] == "partition" and a.get("flag") == "boot"]
    assert [a["device"] for a in esps] == ["disk0", "disk1"] and all(a["grub_device"] for a in esps)
    assert not any(a.get("grub_device") for a in config if a["type"] == "disk")
    assert [a["path"] for a in config if a["type"] == "mount"] == ["/", "/boot", "/boot/efi"]


def test_autoinstall_yaml_is_the_dict_indented_for_the_storage_key():
    layout = Layout("raid10", DEVICES["raid10"], lvm=True)
    lines = autoinstall_yaml(layout).splitlines()
    assert lines[0] == "    config:" and lines[-2:] == ["    swap:", "      size: 0"]
    actions = [json.loads(line.removeprefix("      - ")) for line in lines[1:-2]]
    assert actions == autoinstall(layout)["config"]


def test_stock_user_data_passes_curtin_storage_rules_for_every_layout(tmp_path):
    paths = []
    for index, layout in enumerate(LAYOUTS):
        path = tmp_path / f"user-data-{index}-{layout_id(layout)}"
        path.write_text(stock("ubuntu-24.04-autoinstall", layout))
        paths.append(path)
    result = run([cloud_init_tool("python"), CHECK_SCRIPT, *paths])
    assert result.returncode == 0, result.stdout + result.stderr
    # The whole file is still valid cloud-config and autoinstall for one of them.
    result = run([cloud_init_tool("cloud-init"), "schema", "--config-file", paths[-1]])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (('"volume": "md1"', '"volume": "md9"'), "volume 'md9' is not an earlier action"),
        (('"raidlevel": 1,', '"raidlevel": 3,'), "raidlevel"),
        (('"path": "/"}', '"path": "/srv"}'), "nothing is mounted at /"),
        (('"fstype": "ext4"', '"fstype": "ext9"'), "fstype"),
        (('"wipe": "superblock"', '"wipe": "yes"'), "wipe"),
    ],
)
def test_curtin_storage_check_rejects_broken_storage(tmp_path, edit, complaint):
    text = stock("ubuntu-24.04-autoinstall", Layout("raid1", DEVICES["raid1"]))
    assert edit[0] in text
    path = tmp_path / "user-data"
    path.write_text(text.replace(*edit, 1))
    result = run([cloud_init_tool("python"), CHECK_SCRIPT, path])
    assert result.returncode == 1 and complaint in result.stdout, result.stdout + result.stderr


# --- the context ---


def test_context_exposes_the_layout_and_defaults_to_a_single_disk():
    storage = context()["storage"]
    assert storage["devices"] == ["/dev/sda"] and storage["kind"] == "single" and storage["lvm"]
    assert storage["preseed"] == preseed(single("/dev/sda"))
    layout = Layout("raid1", DEVICES["raid1"])
    storage = context(storage=layout)["storage"]
    assert storage["devices"] == ["/dev/sda", "/dev/sdb"]
    assert storage["kickstart"] == kickstart(layout) and storage["autoinstall"] == autoinstall_yaml(layout)
