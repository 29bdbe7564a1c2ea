"""wipe_disks, partition and raid against sandbox disk images, with the real wipefs and sgdisk."""

import os
import shutil
import subprocess

import pytest

from provisioner.agent.context import Context
from provisioner.agent.host import Completed, RealHost, SandboxHost
from provisioner.agent.results import TaskFailed
from provisioner.agent.tasks import TASKS, run_task
from tests.unit.agent.conftest import MIB, RecordingChannel, make_disk


def _signatures(path):
    return subprocess.run(["wipefs", "--noheadings", "--output", "TYPE", path], capture_output=True, text=True).stdout


@pytest.fixture
def loop_device(tmp_path):
    """A real block device backed by a file of the test's own."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("loop devices need root and losetup")
    backing = tmp_path / "loop.img"
    with open(backing, "wb") as f:
        f.truncate(8 * MIB)
    attached = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if attached.returncode != 0:
        pytest.skip(f"no loop device: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    yield device
    subprocess.run(["losetup", "--detach", device], check=True)


def _with_gpt(path):
    subprocess.run(["sgdisk", "--new=1:0:+4M", "--typecode=1:8300", path], check=True, capture_output=True)


def test_wipe_removes_signatures_and_zeroes_both_ends(sandbox, ctx):
    size = 16 * MIB
    sda = make_disk(sandbox, "sda", size)
    sdb = make_disk(sandbox, "sdb", size)
    _with_gpt(sda)
    subprocess.run(["mkfs.ext4", "-q", "-F", sdb], check=True, capture_output=True)
    with open(sda, "r+b") as f:
        f.seek(8 * MIB)
        f.write(b"middle")
        f.seek(size - 100)
        f.write(b"tail-bytes")
    assert "gpt" in _signatures(sda) and "ext4" in _signatures(sdb)

    output = TASKS["wipe_disks"](ctx, {"disks": ["/dev/sda", "/dev/sdb"]})

    assert _signatures(sda).strip() == "" and _signatures(sdb).strip() == ""
    data = open(sda, "rb").read()
    assert data[:MIB] == bytes(MIB) and data[-MIB:] == bytes(MIB)
    # Only the ends: the middle of the disk is left to the image that will overwrite it.
    assert data[8 * MIB : 8 * MIB + 6] == b"middle"
    assert "/dev/sdb" in output
    assert ctx.channel.percents[-1] == 100


def test_wipe_resolves_every_disk_before_touching_any(sandbox, ctx):
    sda = make_disk(sandbox, "sda", 4 * MIB, fill=b"keep")
    result = run_task(ctx, "wipe_disks", {"disks": ["/dev/sda", "/dev/sdq"]})
    assert (result.ok, result.reason) == (False, "DiskNotFound")
    assert open(sda, "rb").read(4) == b"keep"


@pytest.mark.parametrize(("layout", "first_type"), [("uefi", "EF00"), ("bios", "EF02")])
def test_partition_writes_a_gpt_layout(sandbox, ctx, layout, first_type):
    sda = make_disk(sandbox, "sda", 1024 * MIB)
    if layout == "uefi":
        _with_gpt(sda)  # an old table is replaced, not added to
    output = TASKS["partition"](ctx, {"disk": "/dev/sda", "layout": layout})
    table = subprocess.run(["sgdisk", "--print", sda], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in table.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2"]
    assert rows[0][5] == first_type and rows[1][5] == "8304"
    # The root partition runs to the end of the disk.
    last_usable = int(next(line for line in table.splitlines() if "last usable" in line).split()[-1])
    assert int(rows[1][2]) == last_usable
    assert first_type in output
    # The kernel re-read is for real disks only: in the sandbox it is recorded.
    assert sandbox.planned_commands() == [f"partprobe {sda}"]


def test_partition_rejects_an_unknown_layout(sandbox, ctx):
    make_disk(sandbox, "sda")
    result = run_task(ctx, "partition", {"disk": "/dev/sda", "layout": "mbr"})
    assert (result.ok, result.reason) == (False, "InvalidParams")
    assert "layout" in result.message


def test_raid_records_mdadm_and_creates_the_array_disk(sandbox, ctx):
    sda, sdb = make_disk(sandbox, "sda", 8 * MIB), make_disk(sandbox, "sdb", 6 * MIB)
    TASKS["raid"](ctx, {"device": "/dev/md0", "level": 1, "members": ["/dev/sda", "/dev/sdb"]})
    assert sandbox.planned_commands() == [
        f"mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 {sda} {sdb}"
    ]
    # A mirror is as large as its smallest member; later tasks can address /dev/md0.
    assert (sandbox.disks / "md0.img").stat().st_size == 6 * MIB
    assert sandbox.device("/dev/md0").endswith("md0.img")


@pytest.mark.parametrize(
    ("params", "field"),
    [({"device": "/dev/sda", "level": 1, "members": ["/dev/sda", "/dev/sdb"]}, "device"),
     ({"device": "/dev/md0", "level": 3, "members": ["/dev/sda", "/dev/sdb"]}, "level"),
     ({"device": "/dev/md0", "level": 5, "members": ["/dev/sda", "/dev/sdb"]}, "members"),
     ({"device": "/dev/md0", "level": 1, "members": ["/dev/sda", "/dev/sda"]}, "members")],
)  # fmt: skip
def test_raid_params_are_checked_before_anything_runs(sandbox, ctx, params, field):
    make_disk(sandbox, "sda")
    make_disk(sandbox, "sdb")
    with pytest.raises(TaskFailed) as exc:
        TASKS["raid"](ctx, params)
    assert exc.value.reason == "InvalidParams" and exc.value.message.startswith(field)
    assert sandbox.planned_commands() == []


def test_a_busy_disk_is_a_failure_worth_retrying(tmp_path, loop_device):
    ctx = Context(RealHost(tmp_path / "state"), RecordingChannel())
    # An exclusive opener, as a mounted filesystem or an assembled array is.
    holder = os.open(loop_device, os.O_RDONLY | os.O_EXCL)
    try:
        result = run_task(ctx, "wipe_disks", {"disks": [loop_device]})
    finally:
        os.close(holder)
    assert (result.ok, result.reason, result.retryable) == (False, "DiskBusy", True)
    # Once it is let go, the same task goes through.
    assert run_task(ctx, "wipe_disks", {"disks": [loop_device]}).ok


@pytest.mark.parametrize("metadata", ["1.0", "1.2", 1.0])
@pytest.mark.parametrize("level", [1, 10])
def test_raid_takes_the_superblock_version(sandbox, ctx, level, metadata):
    members = [make_disk(sandbox, f"sd{c}", 8 * MIB) for c in "abcd"[: 2 if level == 1 else 4]]
    output = TASKS["raid"](
        ctx, {"device": "/dev/md0", "level": level, "members": [f"/dev/sd{c}" for c in "abcd"[: len(members)]],
              "metadata": metadata},
    )  # fmt: skip
    expected = f"mdadm --create /dev/md0 --run --level={level} --raid-devices={len(members)} --metadata={metadata}"
    assert sandbox.planned_commands() == [f"{expected} {' '.join(members)}"]
    assert output.startswith(expected)
    # RAID 10 over four members holds two members' worth.
    assert (sandbox.disks / "md0.img").stat().st_size == (8 if level == 1 else 16) * MIB
    said = any("superblocks at the end" in line for line in ctx.channel.lines)
    assert said is (str(metadata) == "1.0")


def test_raid_rejects_an_unknown_superblock_version(sandbox, ctx):
    make_disk(sandbox, "sda")
    make_disk(sandbox, "sdb")
    result = run_task(ctx, "raid", {"device": "/dev/md0", "level": 1, "members": ["/dev/sda", "/dev/sdb"],
                                    "metadata": "0.90"})  # fmt: skip
    assert (result.reason, result.message.split(":")[0]) == ("InvalidParams", "metadata")
    assert sandbox.planned_commands() == []


class _BusyMdadm(SandboxHost):
    """mdadm as it answers when udev still holds a member it is probing (the sandbox cannot make that happen)."""

    def run(self, argv, **kw):
        if argv[:2] == ["mdadm", "--create"]:
            return Completed(1, "mdadm: cannot open /dev/sdb: Device or resource busy\n")
        return super().run(argv, **kw)


def test_raid_on_a_busy_member_is_worth_retrying(tmp_path):
    host = _BusyMdadm(tmp_path / "sandbox")
    make_disk(host, "sda")
    make_disk(host, "sdb")
    result = run_task(Context(host), "raid", {"device": "/dev/md0", "level": 1, "members": ["/dev/sda", "/dev/sdb"]})
    assert (result.reason, result.retryable) == ("RaidFailed", True)
    assert "Device or resource busy" in result.message
