"""Discovery in the boot configs: defaults that boot the memory OS in discovery mode, a local-boot file per known
MAC, and the TFTP-root helpers that never replace an install's per-MAC file."""

import os

import pytest

from provisioner.pxe import (
    BootEntry,
    DiscoveryBoot,
    Loader,
    discovery_cmdline,
    ensure_local,
    local_macs,
    remove_local,
    render_grub_default,
    render_ipxe_discover,
    render_local,
    render_pxelinux_default,
    sync_defaults,
    write,
    write_defaults,
    write_local,
)
from provisioner.pxe.bootconfig import DISCOVERY_NOTE
from provisioner.pxe.tftp import atomic_create
from tests.unit.pxe.support import BASE_URL, MAC, assert_golden, run

KERNEL, INITRD = "/images/memory-os/vmlinuz", "/images/memory-os/initramfs.img"
OTHER = "52:54:00:99:99:99"


def discovery(extra: str = "console=tty0 console=ttyS0,115200n8") -> DiscoveryBoot:
    return DiscoveryBoot(KERNEL, INITRD, discovery_cmdline(BASE_URL + "/", extra))


def test_discovery_cmdline_names_the_mode_and_the_url_and_no_token():
    assert discovery_cmdline(BASE_URL + "/", "console=ttyS0") == (
        f"provisioner.mode=discover provisioner.url={BASE_URL} console=ttyS0"
    )
    assert "token" not in discovery_cmdline(BASE_URL)
    with pytest.raises(ValueError, match="base URL"):
        discovery_cmdline("ftp://x")


def test_discovering_configs_match_golden():
    assert_golden("pxelinux-default-discover.cfg", render_pxelinux_default(discovery()))
    assert_golden("grub.cfg-default-discover", render_grub_default(discovery()))
    assert_golden("discover.ipxe", render_ipxe_discover(discovery()))
    assert_golden("pxelinux-01-mac-local.cfg", render_local(Loader.PXELINUX, MAC))
    assert_golden("grub.cfg-01-mac-local", render_local(Loader.GRUB, MAC))


def test_without_discovery_the_defaults_are_unchanged():
    assert render_pxelinux_default(None) == render_pxelinux_default()
    assert "LOCALBOOT 0" in render_pxelinux_default() and DISCOVERY_NOTE not in render_pxelinux_default()
    assert DISCOVERY_NOTE not in render_grub_default()


def test_pxelinux_default_discovers_and_asks_for_bootif():
    text = render_pxelinux_default(discovery())
    assert "DEFAULT discover\n" in text and "  IPAPPEND 2\n" in text
    assert f"  KERNEL {KERNEL}\n" in text and "provisioner.mode=discover" in text


def test_grub_default_discovers_only_with_the_booting_mac_and_after_the_per_mac_file():
    lines = render_grub_default(discovery()).splitlines()
    configfile = next(i for i, line in enumerate(lines) if "configfile" in line)
    entry = lines.index("    menuentry 'Discover this machine' {")
    fi = lines.index("fi")
    assert configfile < entry < fi, "the per-MAC file comes first, and discovery only inside the MAC match"
    linux = lines[entry + 1]
    assert '"BOOTIF=01-${provisioner_m1}-${provisioner_m2}-' in linux  # double quotes: GRUB expands them


def test_local_files_boot_the_disk_and_say_whose_they_are():
    pxelinux = render_local(Loader.PXELINUX, MAC.upper())
    assert pxelinux.startswith("SERIAL 0 115200\n") and "LOCALBOOT 0" in pxelinux and MAC in pxelinux
    assert "linux" not in render_local(Loader.GRUB, MAC) and "chainloader" in render_local(Loader.GRUB, MAC)
    with pytest.raises(ValueError, match="HTTP"):
        render_local(Loader.IPXE, MAC)


def test_grub_discovery_scripts_pass_grub_script_check(tmp_path):
    for name, text in [
        ("default", render_grub_default(discovery("a=b;c 'q' $HOME"))),
        ("local", render_local(Loader.GRUB, MAC)),
    ]:
        path = tmp_path / name
        path.write_text(text)
        result = run(["grub-script-check", path])
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}\n{text}"


@pytest.mark.parametrize(
    ("field", "value"), [("kernel", ""), ("initrd", "a b"), ("cmdline", "x\nDEFAULT evil"), ("cmdline", "BOOTIF=1")]
)
def test_discovery_boot_refuses_what_would_break_the_config(field, value):
    values = {"kernel": KERNEL, "initrd": INITRD, "cmdline": "quiet"} | {field: value}
    with pytest.raises(ValueError):
        DiscoveryBoot(**values)


def test_sync_defaults_writes_only_what_differs(tmp_path):
    assert sync_defaults(tmp_path, None) == [], "without discovery a root without defaults stays so"
    written = sync_defaults(tmp_path, discovery())
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {"pxelinux.cfg/default", "grub/grub.cfg"}
    assert (tmp_path / "pxelinux.cfg/default").read_text() == render_pxelinux_default(discovery())
    assert sync_defaults(tmp_path, discovery()) == [], "already in line: nothing written"
    assert len(sync_defaults(tmp_path, None)) == 2
    assert (tmp_path / "grub/grub.cfg").read_text() == render_grub_default()
    assert sync_defaults(tmp_path, None) == []


def test_sync_defaults_without_discovery_leaves_a_hand_written_default_alone(tmp_path):
    (tmp_path / "pxelinux.cfg").mkdir()
    (tmp_path / "pxelinux.cfg/default").write_text("DEFAULT menu\n")
    assert sync_defaults(tmp_path, None) == []
    assert (tmp_path / "pxelinux.cfg/default").read_text() == "DEFAULT menu\n"


def test_ensure_local_never_replaces_an_install_file(tmp_path):
    write_defaults(tmp_path, discovery())
    install = write(tmp_path, BootEntry(mac=MAC, kernel=KERNEL, initrd=INITRD, cmdline="install"))
    created = ensure_local(tmp_path, MAC)
    assert [p.name for p in created] == ["grub.cfg-01-52-54-00-12-34-56"], "only the loader without a file"
    assert "APPEND install" in install.read_text()
    assert ensure_local(tmp_path, MAC) == []
    assert local_macs(tmp_path) == {MAC}  # the GRUB file is ours
    assert ensure_local(tmp_path, OTHER) and local_macs(tmp_path) == {MAC, OTHER}


def test_local_macs_reads_every_mac_back_from_its_file_names(tmp_path):
    # A MAC whose octets read like the "01-" of the names must not be cut short.
    macs = {"52:54:00:01:01:01", "02:01:01:01:01:01", "52:54:00:ab:01:00", MAC}
    for mac in macs:
        ensure_local(tmp_path, mac)
    assert local_macs(tmp_path) == macs
    assert remove_local(tmp_path, "52:54:00:01:01:01") and local_macs(tmp_path) == macs - {"52:54:00:01:01:01"}


def test_atomic_create_loses_to_a_file_already_there(tmp_path):
    path = tmp_path / "pxelinux.cfg" / "01-52-54-00-12-34-56"
    assert atomic_create(path, "first\n") is True
    assert atomic_create(path, "second\n") is False
    assert path.read_text() == "first\n"
    assert os.listdir(path.parent) == [path.name], "no temporary file left behind"


def test_remove_local_removes_only_local_boot_files(tmp_path):
    ensure_local(tmp_path, MAC)
    ensure_local(tmp_path, OTHER)
    install = write(tmp_path, BootEntry(mac=OTHER, kernel=KERNEL, initrd=INITRD, cmdline="install"))
    removed = remove_local(tmp_path, MAC)
    assert len(removed) == 2 and not any(p.exists() for p in removed)
    assert [p.name for p in remove_local(tmp_path, OTHER)] == ["grub.cfg-01-52-54-00-99-99-99"]
    assert "APPEND install" in install.read_text(), "an install's file is never removed"
    assert remove_local(tmp_path, MAC) == []
    assert sorted(os.listdir(tmp_path / "pxelinux.cfg")) == ["01-52-54-00-99-99-99"]


def test_write_local_replaces_an_ended_install_file(tmp_path):
    write(tmp_path, BootEntry(mac=MAC, kernel=KERNEL, initrd=INITRD, cmdline="install"))
    written = write_local(tmp_path, MAC)
    assert [p.read_text() for p in written] == [render_local(Loader.PXELINUX, MAC), render_local(Loader.GRUB, MAC)]
    assert local_macs(tmp_path) == {MAC}
