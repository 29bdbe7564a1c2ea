"""The lab's PXE ROM: which file it reads from the TFTP root, and what it makes of the command line."""

from __future__ import annotations

import pytest

from provisioner import pxe
from provisioner.lab.firmware import (
    BootKind,
    Firmware,
    candidate_names,
    classify,
    mask_cmdline,
    nocloud_seed,
    parse_cmdline,
    resolve,
)

MAC = "52:54:00:AB:CD:EF"
TOKEN = "Tok3n_abcdefghijklmnop"
BASE = "http://127.0.0.1:8000"


def arm(root, method="image", mac=MAC, **kwargs):
    cmdline = pxe.kernel_cmdline(method, mac=mac, base_url=BASE, token=TOKEN, hostname="web01", domain="lab", **kwargs)
    pxe.write_all(root, mac=mac, kernel="images/vmlinuz", initrd="images/initrd.img", cmdline=cmdline)


def test_pxelinux_asks_like_syslinux_in_lower_case():
    names = candidate_names("bios", MAC, uuid="4C4C4544-0042", ip="10.0.0.5")
    assert names[:2] == ["pxelinux.cfg/4c4c4544-0042", "pxelinux.cfg/01-52-54-00-ab-cd-ef"]
    assert names[2:4] == ["pxelinux.cfg/0A000005", "pxelinux.cfg/0A00000"]
    assert names[-1] == "pxelinux.cfg/default"


def test_grub_asks_for_its_per_mac_name_then_grub_cfg():
    assert candidate_names("uefi", MAC) == ["grub/grub.cfg-01-52-54-00-ab-cd-ef", "grub/grub.cfg"]


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_no_config_at_all_boots_the_disk(tmp_path, firmware):
    loaded, target = resolve(tmp_path, firmware, MAC)
    assert loaded.path is None and target.kind is BootKind.LOCAL
    assert len(loaded.asked) >= 2


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_the_default_configs_boot_the_disk(tmp_path, firmware):
    pxe.write_defaults(tmp_path)
    loaded, target = resolve(tmp_path, firmware, MAC)
    assert loaded.path in ("pxelinux.cfg/default", "grub/grub.cfg")
    assert target.kind is BootKind.LOCAL


def test_pxelinux_per_mac_config_boots_the_agent_with_bootif(tmp_path):
    pxe.write_defaults(tmp_path)
    arm(tmp_path)
    loaded, target = resolve(tmp_path, Firmware.BIOS, MAC)
    assert loaded.path == "pxelinux.cfg/01-52-54-00-ab-cd-ef"
    assert target.kind is BootKind.AGENT
    assert target.kernel == "images/vmlinuz" and target.initrd == "images/initrd.img"
    assert target.args["provisioner.token"] == TOKEN
    assert target.args["provisioner.url"] == BASE
    assert target.cmdline.endswith("BOOTIF=01-52-54-00-ab-cd-ef")


def test_grub_per_mac_config_is_unquoted_and_carries_its_own_bootif(tmp_path):
    arm(tmp_path, "autoinstall")
    loaded, target = resolve(tmp_path, Firmware.UEFI, MAC)
    assert loaded.path == "grub/grub.cfg-01-52-54-00-ab-cd-ef"
    assert target.kind is BootKind.AUTOINSTALL
    assert target.kernel == "/images/vmlinuz"
    # GRUB single-quotes the `;` of ds=; the kernel sees it unquoted.
    assert target.args["ds"] == f"nocloud-net;s={BASE}/i/{TOKEN}/"
    assert target.answer_url == f"{BASE}/i/{TOKEN}/"
    assert target.args["BOOTIF"] == "01-52-54-00-ab-cd-ef"


def test_an_upper_case_file_name_is_not_what_the_rom_asks_for(tmp_path):
    (tmp_path / "pxelinux.cfg").mkdir()
    (tmp_path / "pxelinux.cfg" / "01-52-54-00-AB-CD-EF").write_text(
        "DEFAULT x\nLABEL x\n KERNEL k\n APPEND url=http://x/p\n"
    )
    loaded, target = resolve(tmp_path, "bios", MAC)
    assert loaded.path is None and target.kind is BootKind.LOCAL


def test_another_machines_config_is_not_read(tmp_path):
    arm(tmp_path, mac="52:54:00:00:00:01")
    pxe.write_defaults(tmp_path)
    _, target = resolve(tmp_path, "bios", MAC)
    assert target.kind is BootKind.LOCAL


@pytest.mark.parametrize(
    "method, kwargs, kind, url",
    [
        ("preseed", {}, BootKind.PRESEED, f"{BASE}/i/{TOKEN}/preseed.cfg"),
        ("kickstart", {}, BootKind.KICKSTART, f"{BASE}/i/{TOKEN}/ks.cfg"),
        ("kickstart", {"legacy_anaconda": True}, BootKind.KICKSTART, f"{BASE}/i/{TOKEN}/ks.cfg"),
        ("autoinstall", {}, BootKind.AUTOINSTALL, f"{BASE}/i/{TOKEN}/"),
    ],
)
def test_installer_command_lines_are_recognised(tmp_path, method, kwargs, kind, url):
    arm(tmp_path, method, **kwargs)
    _, target = resolve(tmp_path, "bios", MAC)
    assert target.kind is kind
    assert target.answer_url == url


def test_cmdline_parsing():
    args = parse_cmdline('console=ttyS0,115200 quiet "ds=nocloud-net;s=http://h/i/x/" inst.ks=http://h/ks.cfg')
    assert args == {
        "console": "ttyS0,115200",
        "quiet": "",
        "ds": "nocloud-net;s=http://h/i/x/",
        "inst.ks": "http://h/ks.cfg",
    }
    assert nocloud_seed("nocloud;s=https://h/seed/") == "https://h/seed/"
    assert nocloud_seed("ec2") == ""
    assert classify("k", "i", "root=/dev/sda1 quiet").kind is BootKind.UNKNOWN


def test_masking_hides_the_token_wherever_it_appears():
    line = f"provisioner.url={BASE} provisioner.token={TOKEN} url={BASE}/i/{TOKEN}/preseed.cfg"
    masked = mask_cmdline(line)
    assert TOKEN not in masked
    assert "provisioner.token=***" in masked and f"{BASE}/i/***/preseed.cfg" in masked


def _discovering(root):
    boot = pxe.DiscoveryBoot("images/memory-os/vmlinuz", "images/memory-os/initrd", pxe.discovery_cmdline(BASE))
    pxe.write_defaults(root, boot)


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_a_discovering_default_boots_an_unknown_mac_into_discovery_with_its_bootif(tmp_path, firmware):
    _discovering(tmp_path)
    loaded, target = resolve(tmp_path, firmware, MAC)
    assert loaded.path in ("pxelinux.cfg/default", "grub/grub.cfg")
    assert target.kind is BootKind.DISCOVER
    assert target.args["provisioner.mode"] == "discover" and target.args["provisioner.url"] == BASE
    assert "provisioner.token" not in target.args
    # GRUB spells BOOTIF from the MAC its regexp took apart; the lab expands it as GRUB does.
    assert target.args["BOOTIF"] == "01-52-54-00-ab-cd-ef"


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_a_known_macs_local_boot_file_wins_over_the_discovering_default(tmp_path, firmware):
    _discovering(tmp_path)
    pxe.ensure_local(tmp_path, MAC)
    loaded, target = resolve(tmp_path, firmware, MAC)
    assert loaded.path.endswith("01-52-54-00-ab-cd-ef") and target.kind is BootKind.LOCAL
    assert resolve(tmp_path, firmware, "52:54:00:00:00:09")[1].kind is BootKind.DISCOVER
