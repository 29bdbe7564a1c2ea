"""Per-MAC and default boot configs: golden files, the loaders' file names, GRUB syntax, BOOTIF, UEFI local boot."""

import pytest

from provisioner.pxe import (
    BootEntry,
    Loader,
    kernel_cmdline,
    render,
    render_grub_default,
    render_ipxe_local,
    render_pxelinux_default,
    tftp_path,
)
from provisioner.pxe.bootconfig import UEFI_LOCAL_LOADERS
from tests.unit.pxe.support import BASE_URL, GOLDEN_DIR, MAC, TOKEN, assert_golden, run

KERNEL = "/images/ubuntu-24.04/vmlinuz"
INITRD = "/images/ubuntu-24.04/initrd"


def entry(loader: Loader, cmdline: str | None = None) -> BootEntry:
    if cmdline is None:
        cmdline = kernel_cmdline(
            "autoinstall", mac=MAC, base_url=BASE_URL, token=TOKEN, extra_args="console=ttyS0,115200n8"
        )
    return BootEntry(mac=MAC.upper(), kernel=KERNEL, initrd=INITRD, cmdline=cmdline, loader=loader)


@pytest.mark.parametrize(
    ("loader", "golden"),
    [(Loader.PXELINUX, "pxelinux-01-mac.cfg"), (Loader.GRUB, "grub.cfg-01-mac"), (Loader.IPXE, "install.ipxe")],
)
def test_per_mac_config_matches_golden(loader, golden):
    assert_golden(golden, render(entry(loader)))


def test_defaults_match_golden():
    assert_golden("pxelinux-default.cfg", render_pxelinux_default())
    assert_golden("grub.cfg-default", render_grub_default())
    assert_golden("local.ipxe", render_ipxe_local())


def test_file_names_are_the_ones_loaders_ask_for():
    # pxelinux ignores an upper-case file name, so an upper-case MAC must still give a lower-case name.
    assert tftp_path(Loader.PXELINUX, "52-54-00-AB-CD-EF") == "pxelinux.cfg/01-52-54-00-ab-cd-ef"
    assert tftp_path(Loader.GRUB, "5254.00ab.cdef") == "grub/grub.cfg-01-52-54-00-ab-cd-ef"
    with pytest.raises(ValueError, match="HTTP"):
        tftp_path(Loader.IPXE, MAC)


def test_pxelinux_has_serial_console_and_asks_for_bootif():
    text = render(entry(Loader.PXELINUX))
    assert text.splitlines()[0] == "SERIAL 0 115200"
    assert "  IPAPPEND 2\n" in text
    assert f"  KERNEL {KERNEL}\n" in text and f"  INITRD {INITRD}\n" in text


def test_pxelinux_default_boots_local_disk_only():
    text = render_pxelinux_default()
    assert text.splitlines()[0] == "SERIAL 0 115200" and "LOCALBOOT 0" in text
    assert "KERNEL" not in text and "APPEND" not in text


def test_grub_per_mac_names_bootif_and_quotes_the_semicolon():
    text = render(entry(Loader.GRUB))
    assert "BOOTIF=01-52-54-00-12-34-56" in text
    # Unquoted, GRUB would end the linux command at ';' and the installer would never find its seed.
    assert f"'ds=nocloud-net;s={BASE_URL}/i/{TOKEN}/'" in text


def test_ipxe_adds_bootif_of_the_booting_nic_and_falls_back_to_local():
    text = render(entry(Loader.IPXE))
    assert text.startswith("#!ipxe\n")
    assert "BOOTIF=01-${netX/mac:hexhyp}" in text
    assert "boot || goto local" in text and "\n:local\n" in text
    assert render_ipxe_local().startswith("#!ipxe\n") and "kernel" not in render_ipxe_local()


def test_grub_default_dispatches_on_net_default_mac_without_file_test():
    text = render_grub_default()
    assert '"$net_default_mac"' in text
    assert 'configfile "$prefix/grub.cfg-01-' in text
    assert "[ -f" not in text and "test -f" not in text
    assert "exit 1" in text and "linux" not in text


def _local_entry(text: str) -> list[str]:
    """The lines of the 'Boot local disk' menuentry, stripped."""
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index("menuentry 'Boot local disk' {")
    return lines[start + 1 : lines.index("}", start)]


def _loaders(entry_lines: list[str]) -> list[str]:
    """The paths of the entry's `for loader in ...; do` list, in order."""
    words = " ".join(entry_lines).replace("\\", " ").split()
    begin, end = words.index("in") + 1, words.index("do")
    return [w.rstrip(";") for w in words[begin:end]]


@pytest.mark.parametrize("text", [render(entry(Loader.GRUB)), render_grub_default()], ids=["per-mac", "default"])
def test_grub_local_boot_chainloads_a_disk_loader_and_exits_only_when_none_is_found(text):
    lines = _local_entry(text)
    search = lines.index('if search --no-floppy --set=root --file "$loader"; then')
    only_hd = lines.index("if regexp '^hd' \"$root\"; then")
    chainload = lines.index('chainloader "$loader"')
    assert search < only_hd < chainload < lines.index("boot") < lines.index("done"), lines
    # `exit 1` is the last resort, after every candidate was tried: it is what left OVMF in its setup screen.
    assert lines[-1] == "exit 1" and lines.count("exit 1") == 1
    assert lines.index("done") < len(lines) - 1
    assert "linux" not in " ".join(lines)


def test_grub_local_boot_tries_vendor_shims_first_and_the_removable_path_last():
    loaders = _loaders(_local_entry(render_grub_default()))
    assert loaders == list(UEFI_LOCAL_LOADERS)
    # The removable-media path is on install media too, and a Ubuntu/RHEL one starts fbx64.efi: last resort.
    assert loaders[-1] == "/EFI/BOOT/BOOTX64.EFI"
    for vendor in ("debian", "ubuntu", "rocky", "redhat", "centos"):
        # Under Secure Boot only shim passes the firmware's check, so it must come before the vendor's GRUB.
        assert loaders.index(f"/EFI/{vendor}/shimx64.efi") < loaders.index(f"/EFI/{vendor}/grubx64.efi")
    assert "/EFI/Microsoft/Boot/bootmgfw.efi" in loaders
    assert all(path.startswith("/EFI/") and " " not in path for path in loaders)


@pytest.mark.parametrize(
    "cmdline",
    [
        "",
        "a=b;c=d 'quoted' \"double\" $HOME ${x} {brace} back\\slash",
        "ds=nocloud-net;s=http://x/i/t/ console=ttyS0,115200n8",
    ],
)
def test_grub_scripts_pass_grub_script_check(tmp_path, cmdline):
    for name, text in [("per-mac", render(entry(Loader.GRUB, cmdline))), ("default", render_grub_default())]:
        path = tmp_path / name
        path.write_text(text)
        result = run(["grub-script-check", path])
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}\n{text}"


def test_grub_script_check_rejects_a_broken_script(tmp_path):
    # Proves the validator above can fail: an unterminated block is an error.
    path = tmp_path / "broken"
    path.write_text(render_grub_default().replace("fi\n", ""))
    assert run(["grub-script-check", path]).returncode != 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kernel", ""),
        ("kernel", "/a b"),
        ("initrd", "x\ny"),
        ("cmdline", "quiet\nDEFAULT evil"),
        ("cmdline", "BOOTIF=01-aa-bb-cc-dd-ee-ff"),
        ("cmdline", "x" * 1901),
    ],
)
def test_boot_entry_refuses_values_that_would_break_the_config(field, value):
    values = {"mac": MAC, "kernel": KERNEL, "initrd": INITRD, "cmdline": "quiet"} | {field: value}
    with pytest.raises(ValueError):
        BootEntry(**values)


def test_boot_entry_refuses_malformed_mac():
    with pytest.raises(ValueError, match="'not-a-mac'"):
        BootEntry(mac="not-a-mac", kernel=KERNEL, initrd=INITRD, cmdline="")


def test_every_golden_file_is_still_checked():
    # A golden file no test compares any more would pin nothing while looking like it does.
    profiles = ["ubuntu-24.04-autoinstall", "debian-12-preseed", "rocky-9-kickstart", "centos-7-kickstart"]
    expected = {
        "pxelinux-01-mac.cfg",
        "grub.cfg-01-mac",
        "install.ipxe",
        "pxelinux-default.cfg",
        "grub.cfg-default",
        "local.ipxe",
        "ubuntu-24.04-autoinstall-meta-data.txt",
        "dnsmasq-owning.conf",
        "dnsmasq-proxy.conf",
    } | {f"{p}-{kind}.txt" for p in profiles for kind in ("static", "dhcp")}
    expected |= {f"storage-{name}.txt" for name in ("single-default", "raid1-bios", "raid10-lvm-efi-swap")}
    expected |= {"iso-grub.cfg"}  # test_iso.py
    expected |= {  # test_discovery_configs.py
        "pxelinux-default-discover.cfg",
        "grub.cfg-default-discover",
        "discover.ipxe",
        "pxelinux-01-mac-local.cfg",
        "grub.cfg-01-mac-local",
    }
    assert {p.name for p in GOLDEN_DIR.iterdir()} == expected
