"""Virtual media ISOs: the GRUB config on the CD (golden file, grub-script-check), a real build read back with
xorriso (both BIOS and UEFI boot images, the files, the command line), and the refusals that name what to fix."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from provisioner.pxe import iso
from tests.unit.pxe.support import BASE_URL, MAC, TOKEN, assert_golden, run

CMDLINE = f"provisioner.url={BASE_URL} provisioner.token={TOKEN} provisioner.ip=192.0.2.50/24 console=ttyS0,115200"
needs_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("grub-mkrescue", "xorriso", "mformat")), reason=f"needs {iso.PACKAGES}"
)


def test_the_cd_boots_what_the_network_boot_would_with_the_cds_paths():
    text = iso.grub_config(mac=MAC, cmdline=CMDLINE)
    assert_golden("iso-grub.cfg", text)
    assert "linux /boot/vmlinuz provisioner.url=" in text and "BOOTIF=01-52-54-00-12-34-56\n" in text
    assert "initrd /boot/initrd" in text
    assert "set fallback=1" in text  # a CD that cannot load its kernel boots the disk, not a GRUB prompt


def test_the_cd_config_passes_grub_script_check(tmp_path):
    if shutil.which("grub-script-check") is None:
        pytest.skip("grub-script-check (grub-common) is not installed")
    path = tmp_path / "grub.cfg"
    path.write_text(iso.grub_config(mac=MAC, cmdline=CMDLINE + " a;b $x"))
    assert run(["grub-script-check", path]).returncode == 0


def _sources(tmp_path):
    root = tmp_path / "tftp"
    (root / "memory-os").mkdir(parents=True)
    (root / "memory-os/vmlinuz").write_bytes(b"kernel" * 100)
    (root / "memory-os/initrd.img").write_bytes(b"initrd" * 1000)
    return root


@needs_tools
def test_a_built_iso_boots_by_bios_and_uefi_and_carries_the_files(tmp_path):
    root = _sources(tmp_path)
    out = iso.media_path(root, "7-abc.iso")
    iso.build(out, kernel=root / "memory-os/vmlinuz", initrd=root / "memory-os/initrd.img", mac=MAC, cmdline=CMDLINE)
    assert out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["7-abc.iso"]  # no staging left behind
    report = subprocess.run(["xorriso", "-indev", str(out), "-report_el_torito", "plain"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "BIOS  y" in report and "UEFI  y" in report
    for name, expected in (("/boot/vmlinuz", b"kernel" * 100), ("/boot/initrd", b"initrd" * 1000)):
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(out), "-extract", name, str(tmp_path / "x")],
                       check=True, capture_output=True)  # fmt: skip
        assert (tmp_path / "x").read_bytes() == expected
        (tmp_path / "x").unlink()
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(out), "-extract", "/boot/grub/grub.cfg",
                    str(tmp_path / "cfg")], check=True, capture_output=True)  # fmt: skip
    assert (tmp_path / "cfg").read_text() == iso.grub_config(mac=MAC, cmdline=CMDLINE)
    # Built again (a retried step): replaced in place.
    iso.build(out, kernel=root / "memory-os/vmlinuz", initrd=root / "memory-os/initrd.img", mac=MAC, cmdline="x=1")
    assert iso.remove(root, "7-abc.iso") is True
    assert iso.remove(root, "7-abc.iso") is False


def test_a_bad_command_line_is_refused_before_anything_is_copied(tmp_path):
    root = _sources(tmp_path)
    out = iso.media_path(root, "1-a.iso")
    with pytest.raises(ValueError, match="control character"):
        iso.build(out, kernel=root / "memory-os/vmlinuz", initrd=root / "memory-os/initrd.img", mac=MAC,
                  cmdline="a\nb")  # fmt: skip
    assert not out.parent.exists()


def test_missing_tools_are_named_with_their_packages(tmp_path, monkeypatch):
    root = _sources(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(iso.IsoBuildError, match="grub-mkrescue, xorriso and mtools .*grub-efi-amd64-bin"):
        iso.build(iso.media_path(root, "1-a.iso"), kernel=root / "memory-os/vmlinuz",
                  initrd=root / "memory-os/initrd.img", mac=MAC, cmdline="x=1")  # fmt: skip


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("http://192.0.2.1/vmlinuz", "is a URL"),
        ("/memory-os/../../outside", "outside the TFTP root"),
        ("/memory-os/missing", "is not in the TFTP root"),
        ("/memory-os", "is not in the TFTP root"),
    ],
)
def test_a_kernel_that_is_no_file_of_the_tftp_root_is_refused(tmp_path, path, message):
    root = _sources(tmp_path)
    (tmp_path / "outside").write_text("secret")
    with pytest.raises(iso.IsoBuildError, match=message):
        iso.source_file(root, path, "kernel")


def test_the_kernel_is_found_with_or_without_a_leading_slash(tmp_path):
    root = _sources(tmp_path)
    assert iso.source_file(root, "memory-os/vmlinuz", "kernel") == iso.source_file(root, "/memory-os/vmlinuz", "x")


@pytest.mark.parametrize("name", ["", "../x.iso", "a/b.iso", "x.img", "x" * 200 + ".iso", "a b.iso"])
def test_only_our_names_make_a_media_path(name):
    with pytest.raises(ValueError):
        iso.media_path("/srv/tftp", name)
