"""wipe_disks, partition and raid against sandbox disk images, with the real wipefs and sgdisk."""

import subprocess

import pytest

from provisioner.agent.results import TaskFailed
from provisioner.agent.tasks import TASKS, run_task
from tests.unit.agent.conftest import MIB, make_disk


def _signatures(path):
    return subprocess.run(["wipefs", "--noheadings", "--output", "TYPE", path], capture_output=True, text=True).stdout


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
