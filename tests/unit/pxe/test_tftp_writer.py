"""The TFTP-root writer: atomic replacement, readable files, idempotent removal, local-boot defaults."""

import os
import stat
import threading

import pytest

from provisioner.pxe import BootEntry, Loader, remove, render, write, write_all, write_defaults
from provisioner.pxe.bootconfig import render_grub_default, render_pxelinux_default
from provisioner.pxe.tftp import atomic_write
from tests.unit.pxe.support import MAC

KERNEL, INITRD = "/images/x/vmlinuz", "/images/x/initrd"


def test_write_all_writes_each_tftp_loader_under_its_lookup_name(tmp_path):
    paths = write_all(tmp_path, mac=MAC.upper(), kernel=KERNEL, initrd=INITRD, cmdline="quiet")
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "pxelinux.cfg/01-52-54-00-12-34-56",
        "grub/grub.cfg-01-52-54-00-12-34-56",
    ]
    for path, loader in zip(paths, (Loader.PXELINUX, Loader.GRUB), strict=True):
        expected = render(BootEntry(mac=MAC, kernel=KERNEL, initrd=INITRD, cmdline="quiet", loader=loader))
        assert path.read_text() == expected
        # tftpd drops privileges; a 0600 file would be refused to every client.
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path / "pxelinux.cfg")) == ["01-52-54-00-12-34-56"]  # no temp file left


def test_write_refuses_ipxe(tmp_path):
    with pytest.raises(ValueError, match="HTTP"):
        write(tmp_path, BootEntry(mac=MAC, kernel=KERNEL, initrd=INITRD, cmdline="", loader=Loader.IPXE))


def test_rewrite_replaces_the_file(tmp_path):
    first = write(tmp_path, BootEntry(mac=MAC, kernel=KERNEL, initrd=INITRD, cmdline="one"))
    inode = first.stat().st_ino
    second = write(tmp_path, BootEntry(mac=MAC, kernel=KERNEL, initrd=INITRD, cmdline="two"))
    assert first == second and "APPEND two" in second.read_text()
    assert second.stat().st_ino != inode  # a new file renamed into place, not the old one rewritten


def test_remove_deletes_every_loader_file_and_is_idempotent(tmp_path):
    write_defaults(tmp_path)
    write_all(tmp_path, mac=MAC, kernel=KERNEL, initrd=INITRD, cmdline="quiet")
    other = write_all(tmp_path, mac="52:54:00:99:99:99", kernel=KERNEL, initrd=INITRD, cmdline="quiet")
    removed = remove(tmp_path, "5254.0012.3456")
    assert {p.name for p in removed} == {"01-52-54-00-12-34-56", "grub.cfg-01-52-54-00-12-34-56"}
    assert not any(p.exists() for p in removed)
    assert remove(tmp_path, MAC) == []
    assert all(p.exists() for p in other)  # another machine's install is untouched
    assert (tmp_path / "pxelinux.cfg/default").read_text() == render_pxelinux_default()
    assert (tmp_path / "grub/grub.cfg").read_text() == render_grub_default()


def test_remove_refuses_malformed_mac(tmp_path):
    with pytest.raises(ValueError, match="'../../etc'"):
        remove(tmp_path, "../../etc")


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "pxelinux.cfg" / "default"
    atomic_write(path, "old\n")
    with pytest.raises(UnicodeEncodeError):
        atomic_write(path, "new \ud800\n")  # a lone surrogate fails to encode after the temp file exists
    assert path.read_text() == "old\n"
    assert os.listdir(path.parent) == ["default"]


def test_reader_never_sees_a_partial_file(tmp_path):
    # A TFTP server opening the file mid-write must get one whole version or the other.
    path = tmp_path / "pxelinux.cfg" / "01-52-54-00-12-34-56"
    versions = ["A" * 200_000 + "\n", "B" * 300_000 + "\n"]
    atomic_write(path, versions[0])
    stop = threading.Event()
    seen = []

    def reader():
        while not stop.is_set():
            with open(path) as f:
                seen.append(f.read())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            atomic_write(path, versions[i % 2])
    finally:
        stop.set()
        thread.join()
    assert seen and all(text in versions for text in seen)
