"""grow_root and finding the target root: in the sandbox (the real sfdisk and blkid on a disk image file, the
filesystem step recorded) and on loop devices with the real tools end to end (GPT and MBR; ext4, xfs, btrfs; LVM
where the kernel has device-mapper)."""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from provisioner.agent.context import Context
from provisioner.agent.host import RealHost
from provisioner.agent.tasks import DESTRUCTIVE, run_task
from tests.unit.agent.conftest import MIB, RecordingChannel, make_disk

ROOT_MIB = 330  # mkfs.xfs makes nothing smaller than 300 MB
IMAGE_MIB = ROOT_MIB + 4
DISK_MIB = 640

needs_loop = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/loop-control"), reason="loop devices need root"
)
needs_device_mapper = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/mapper/control"), reason="LVM needs the kernel's device-mapper"
)


def _sh(*argv, input=None):
    return subprocess.run(argv, check=True, capture_output=True, text=True, input=input).stdout


def _table(path):
    return json.loads(_sh("sfdisk", "--json", path))["partitiontable"]


def _image(path, label, size_mib=IMAGE_MIB, *, root_mib=ROOT_MIB, after=False):
    """A disk image as an image builder leaves it: a 1 MiB boot partition, the root partition, nothing free."""
    with open(path, "wb") as f:
        f.truncate(size_mib * MIB)
    boot = "21686148-6449-6E6F-744E-656564454649" if label == "gpt" else "83"
    root = "0FC63DAF-8483-4772-8E79-3D69D8477DE4" if label == "gpt" else "83"
    script = f"label: {label}\n,1M,{boot}\n,{root_mib}M,{root}\n" + (",1M\n" if after else "")
    _sh("sfdisk", "-q", str(path), input=script)


def test_grow_root_is_registered_as_destructive():
    assert "grow_root" in DESTRUCTIVE


@pytest.mark.parametrize("label", ["gpt", "dos"])
def test_sandbox_grows_the_partition_table_and_records_the_filesystem_step(sandbox, ctx, label):
    disk = make_disk(sandbox, "sda", 1)
    _image(disk, label, 64, root_mib=32)
    start = _table(disk)["partitions"][1]["start"]
    _sh("mkfs.ext4", "-q", "-F", "-E", f"offset={start * 512}", disk, "32M")
    os.truncate(disk, 256 * MIB)

    result = run_task(ctx, "grow_root", {"disk": "/dev/sda"})

    assert result.ok, result
    table = _table(disk)
    root = table["partitions"][1]
    end = table["lastlba"] if label == "gpt" else 256 * MIB // 512 - 1
    assert (root["start"], root["start"] + root["size"] - 1) == (start, end)
    assert sandbox.planned_commands()[-2:] == ["e2fsck -f -p /dev/sda2", "resize2fs /dev/sda2"]
    assert ctx.channel.percents[-1] == 100
    assert f"partition 2: {32 * MIB} -> {(end - start + 1) * 512} bytes" in result.output


def test_a_partition_after_the_root_stops_the_growth(sandbox, ctx):
    disk = make_disk(sandbox, "sda", 1)
    _image(disk, "gpt", 64, root_mib=32, after=True)
    start = _table(disk)["partitions"][1]["start"]
    _sh("mkfs.ext4", "-q", "-F", "-E", f"offset={start * 512}", disk, "32M")
    before = _table(disk)
    result = run_task(ctx, "grow_root", {"disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "GrowFailed")
    assert "partition 3 follows it" in result.message
    assert _table(disk)["partitions"] == before["partitions"]


def test_no_root_filesystem_is_target_not_found(sandbox, ctx):
    disk = make_disk(sandbox, "sda", 1)
    _image(disk, "gpt", 64, root_mib=32)
    result = run_task(ctx, "grow_root", {"disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "TargetNotFound")
    assert "partitions: 1: unknown, 2: unknown" in result.message


# -- real loop devices ------------------------------------------------------------------------------------------


@pytest.fixture
def loop(tmp_path):
    """Attach a file as a loop device; the kernel learns its partitions through partprobe, as on a real disk."""
    attached = []

    def attach(path: Path) -> str:
        dev = _sh("losetup", "--find", "--show", str(path)).strip()
        attached.append(dev)
        _sh("partprobe", dev)
        return dev

    yield attach
    for dev in attached:
        # Whatever a failed test left mounted on it goes first, so the device detaches.
        for line in Path("/proc/mounts").read_text().splitlines():
            if line.startswith(f"{dev}p") or line.startswith("/dev/mapper/"):
                subprocess.run(["umount", line.split()[1]], capture_output=True)
        subprocess.run(["losetup", "--detach", dev], capture_output=True)


def _real_ctx(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    return Context(RealHost(state), RecordingChannel())


def _mkfs(fstype, dev):
    argv = {"ext4": ["mkfs.ext4", "-q", "-F"], "xfs": ["mkfs.xfs", "-q", "-f"], "btrfs": ["mkfs.btrfs", "-q", "-f"]}
    _sh(*argv[fstype], dev)


def _fs_size(dev, mnt):
    _sh("mount", dev, str(mnt))
    try:
        st = os.statvfs(mnt)
        return st.f_blocks * st.f_frsize, (mnt / "marker").read_text()
    finally:
        _sh("umount", str(mnt))


@needs_loop
@pytest.mark.parametrize("label", ["gpt", "dos"])
@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs"])
def test_grow_root_on_a_loop_device(tmp_path, loop, label, fstype):
    image = tmp_path / "disk.img"
    _image(image, label)
    os.truncate(image, DISK_MIB * MIB)  # the image written to a larger disk
    dev = loop(image)
    part = f"{dev}p2"
    _mkfs(fstype, part)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    _sh("mount", part, str(mnt))
    (mnt / "marker").write_text("installed system")
    _sh("umount", str(mnt))
    before, _ = _fs_size(part, mnt)
    ctx = _real_ctx(tmp_path)

    result = run_task(ctx, "grow_root", {"disk": dev})

    assert result.ok, result
    table = _table(dev)
    root = table["partitions"][1]
    end = table["lastlba"] if label == "gpt" else DISK_MIB * MIB // 512 - 1
    assert root["start"] + root["size"] - 1 == end
    assert int(Path(f"/sys/block/{Path(dev).name}/{Path(part).name}/size").read_text()) == root["size"]
    after, marker = _fs_size(part, mnt)
    assert marker == "installed system"
    # The filesystem took (nearly) all the space the disk added; its own metadata takes a little.
    assert after - before > (DISK_MIB - IMAGE_MIB) * MIB * 0.9, (before, after)
    # Nothing left mounted by the task.
    assert str(ctx.host.state_dir) not in Path("/proc/mounts").read_text()


@needs_loop
def test_target_root_is_the_largest_linux_filesystem(tmp_path, loop):
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(96 * MIB)
    _sh("sfdisk", "-q", str(image), input="label: gpt\n,16M\n,40M\n,24M\n")
    dev = loop(image)
    for n, fstype in ((1, "ext4"), (2, "ext4"), (3, "ext4")):
        _mkfs(fstype, f"{dev}p{n}")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    _sh("mount", f"{dev}p2", str(mnt))
    (mnt / "marker").write_text("root")
    _sh("umount", str(mnt))
    host = _real_ctx(tmp_path).host
    host.remember_target_disk(dev)
    try:
        assert (host.target_root() / "marker").read_text() == "root"
    finally:
        host.release()
    assert str(host.state_dir) not in Path("/proc/mounts").read_text()


@needs_device_mapper
@needs_loop
def test_root_on_lvm_is_found_and_grown(tmp_path, loop):
    vg = f"t{uuid.uuid4().hex[:8]}"
    image = tmp_path / "disk.img"
    _image(image, "gpt", 260, root_mib=256)
    os.truncate(image, 512 * MIB)
    dev = loop(image)
    pv = f"{dev}p2"
    _sh("pvcreate", "-q", pv)
    _sh("vgcreate", "-q", vg, pv)
    # A large /home beside a smaller root: the root is found by its name, not its size.
    _sh("lvcreate", "-q", "-y", "-L", "96M", "-n", "root", vg)
    _sh("lvcreate", "-q", "-y", "-l", "100%FREE", "-n", "home", vg)
    for lv in ("root", "home"):
        _mkfs("ext4", f"/dev/mapper/{vg}-{lv}")
    _sh("vgchange", "-q", "-an", vg)
    ctx = _real_ctx(tmp_path)
    try:
        ctx.host.remember_target_disk(dev)
        assert ctx.host.target_root().is_dir()
        assert f"/dev/mapper/{vg}-root" in Path("/proc/mounts").read_text()
        ctx.host.release()
        # Released: unmounted and the group deactivated, so the disk is free again.
        assert not Path(f"/dev/mapper/{vg}-root").exists()

        result = run_task(ctx, "grow_root", {"disk": dev})

        assert result.ok, result
        size = int(_sh("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", f"{vg}/root").strip())
        # The 256 MiB the partition gained went to the root, not to /home.
        assert size > 330 * MIB
        assert "logical volume" in result.output
    finally:
        subprocess.run(["vgchange", "-an", vg], capture_output=True)
        subprocess.run(["vgremove", "-f", vg], capture_output=True)
