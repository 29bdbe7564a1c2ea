"""The memory OS builder's pure parts, run by `make test` too (no root, no network, no VM): the cpio writer, the
module selection, the package list, and the boot scripts' syntax."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.memory_os import cpio
from provisioner.memory_os.build import HERE, BuildError, inputs_digest, module_closure, package_list


def test_cpio_is_what_the_kernel_and_cpio_read(tmp_path):
    archive = tmp_path / "initramfs.img"
    cpio.write(
        archive,
        [
            cpio.directory("dev"),
            cpio.char_device("dev/console", 5, 1),
            cpio.file("init", b"#!/bin/sh\necho hi\n", 0o755),
            cpio.file("odd", b"x" * 5),
        ],
    )
    data = archive.read_bytes()
    assert data.startswith(b"070701")
    assert len(data) % 4 == 0
    assert b"TRAILER!!!\0" in data
    if shutil.which("cpio") is None:
        pytest.skip("cpio(1) is not installed to read the archive back")
    listing = subprocess.run(
        ["cpio", "-t", "-v", "--quiet"], input=data, capture_output=True, check=True
    ).stdout.decode()
    lines = listing.splitlines()
    assert [line.split()[-1] for line in lines] == ["dev", "dev/console", "init", "odd"]
    assert lines[1].startswith("crw-------") and "5," in lines[1]
    assert lines[2].startswith("-rwxr-xr-x")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-i", "--quiet", "--no-absolute-filenames"], input=data, cwd=out, check=True)
    assert (out / "init").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (out / "odd").read_bytes() == b"xxxxx"


def _modules_dir(tmp_path: Path) -> Path:
    root = tmp_path / "lib/modules/6.1.0-test"
    root.mkdir(parents=True)
    (root / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko\n"
        "kernel/fs/jbd2/jbd2.ko:\n"
        "kernel/fs/mbcache.ko:\n"
        "kernel/crypto/crc32c_generic.ko:\n"
        "kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko\n"
        "kernel/net/core/failover.ko:\n"
        "kernel/drivers/net/unused.ko:\n"
    )
    (root / "modules.softdep").write_text("softdep ext4 pre: crypto-crc32c\n")
    (root / "modules.alias").write_text("alias crypto-crc32c crc32c_generic\nalias pci:v00001AF4* virtio_net\n")
    (root / "modules.builtin").write_text("kernel/fs/efivarfs/efivarfs.ko\n")
    return root


def test_module_closure_takes_dependencies_first_and_soft_dependencies_through_aliases(tmp_path):
    order = module_closure(_modules_dir(tmp_path), ("ext4", "virtio_net", "efivarfs"))
    names = [Path(p).name for p in order]
    assert set(names) == {"ext4.ko", "jbd2.ko", "mbcache.ko", "crc32c_generic.ko", "virtio_net.ko", "failover.ko"}
    assert names.index("jbd2.ko") < names.index("ext4.ko")
    assert names.index("crc32c_generic.ko") < names.index("ext4.ko")
    assert names.index("failover.ko") < names.index("virtio_net.ko")


def test_module_closure_refuses_a_module_the_kernel_lacks(tmp_path):
    with pytest.raises(BuildError, match="no module e1000"):
        module_closure(_modules_dir(tmp_path), ("ext4", "e1000"))


def test_package_list_has_what_the_agent_tasks_run():
    packages = package_list()
    for needed in ("python3-minimal", "libpython3.11-stdlib", "mdadm", "gdisk", "parted", "util-linux", "e2fsprogs",
                   "dosfstools", "xz-utils", "iproute2", "kmod", "busybox", "ca-certificates", "fdisk", "xfsprogs",
                   "btrfs-progs", "lvm2", "zstd", "qemu-utils", "ethtool", "pciutils", "pci.ids", "dmidecode",
                   "ipmitool", "smartmontools", "nvme-cli", "hdparm", "memtester"):  # fmt: skip
        assert needed in packages
    assert all(" " not in p and "#" not in p for p in packages)


def test_inputs_digest_changes_with_each_input():
    base = inputs_digest(["a"], ("linux-image-x", "1"), "bookworm", "http://m")
    assert base == inputs_digest(["a"], ("linux-image-x", "1"), "bookworm", "http://m")
    assert base != inputs_digest(["a", "b"], ("linux-image-x", "1"), "bookworm", "http://m")
    assert base != inputs_digest(["a"], ("linux-image-x", "2"), "bookworm", "http://m")
    assert base != inputs_digest(["a"], ("linux-image-x", "1"), "bookworm", "http://other")


@pytest.mark.parametrize("script", ["init", "stage2", "udhcpc.script"])
def test_boot_scripts_parse(script):
    shell = shutil.which("busybox") and ["busybox", "sh"] or [shutil.which("dash") or "/bin/sh"]
    done = subprocess.run([*shell, "-n", str(HERE / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_builder_imports_no_django():
    code = "import sys, provisioner.memory_os.build; assert not any(m.startswith('django') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
