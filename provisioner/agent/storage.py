"""Reading a written disk: its partition table, what each partition holds, and where the root filesystem is.

The table is read with `sfdisk --json` and each partition probed with `blkid --probe --offset` on the disk itself,
so the same code reads a real disk and a sandbox disk image (which has no partition devices). Only what lives
inside a partition (LVM) needs the host's partition devices.

The root is the largest ext4, xfs or btrfs partition; when the disk carries LVM physical volumes, their logical
volumes are candidates too, and one named like a root ("root", "lv_root", "rootvol") wins over a larger /home.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Protocol

from provisioner.agent.results import TaskFailed

ROOT_FILESYSTEMS = ("ext4", "xfs", "btrfs")
LVM_MEMBER = "LVM2_member"
_NODE_NUMBER = re.compile(r"(\d+)$")


class Host(Protocol):
    """What this module asks of provisioner.agent.host's hosts (which import this module, so it cannot import
    them)."""

    def device(self, path: str) -> str: ...

    def run(self, argv: list[str], *, timeout: float = 600) -> object: ...

    def partition_device(self, disk: str, number: int) -> str: ...

    def logical_volumes(self, pv: str) -> list[LogicalVolume]: ...


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # sectors
    size: int  # sectors
    fstype: str  # blkid's TYPE; "" when nothing was recognised


@dataclass(frozen=True)
class Table:
    label: str  # "gpt" | "dos"
    sector_size: int
    partitions: tuple[Partition, ...]

    def last(self) -> Partition:
        return max(self.partitions, key=lambda part: part.start + part.size)


@dataclass(frozen=True)
class LogicalVolume:
    path: str  # /dev/<vg>/<lv>
    vg: str
    name: str
    size: int  # bytes
    fstype: str


@dataclass(frozen=True)
class Root:
    """Where the root filesystem is: a partition, or a logical volume on a physical volume that is one."""

    partition: Partition
    fstype: str
    lv: LogicalVolume | None = None


def read_table(host: Host, dev: str) -> Table:
    done = host.run(["sfdisk", "--json", dev], timeout=60)
    if done.returncode != 0:
        raise TaskFailed("TargetNotFound", f"{dev} has no partition table that sfdisk can read: {done.output.strip()}")
    try:
        # The output carries sfdisk's warnings after the JSON (a GPT whose backup header is not at the disk's end).
        table = json.JSONDecoder().raw_decode(done.output[done.output.index("{") :])[0]["partitiontable"]
        sector = int(table.get("sectorsize", 512))
        parts = []
        for entry in table.get("partitions", []):
            number = int(_NODE_NUMBER.search(entry["node"]).group(1))
            start, size = int(entry["start"]), int(entry["size"])
            parts.append(Partition(number, start, size, _probe(host, dev, start * sector, size * sector)))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TaskFailed("TargetNotFound", f"cannot read the partition table of {dev}: {exc}") from exc
    return Table(str(table.get("label", "")), sector, tuple(parts))


def _probe(host: Host, dev: str, offset: int, size: int) -> str:
    done = host.run(
        ["blkid", "--probe", "--output", "value", "--match-tag", "TYPE", "--offset", str(offset), "--size", str(size),
         dev],
        timeout=30,
    )  # fmt: skip
    # Exit status 2: nothing recognised there.
    return done.output.strip() if done.returncode == 0 else ""


def _root_named(lv: LogicalVolume) -> bool:
    return "root" in lv.name.lower()


def find_root(host: Host, disk: str) -> Root:
    """The partition or logical volume that holds the root filesystem of what was written to `disk`.

    Volume groups found on the disk are left active (the host deactivates them on release)."""
    table = read_table(host, host.device(disk))
    candidates: list[tuple[bool, int, Root]] = []
    for part in table.partitions:
        if part.fstype in ROOT_FILESYSTEMS:
            candidates.append((False, part.size * table.sector_size, Root(part, part.fstype)))
        elif part.fstype == LVM_MEMBER:
            for lv in host.logical_volumes(host.partition_device(disk, part.number)):
                if lv.fstype in ROOT_FILESYSTEMS:
                    candidates.append((_root_named(lv), lv.size, Root(part, lv.fstype, lv)))
    if not candidates:
        seen = ", ".join(f"{part.number}: {part.fstype or 'unknown'}" for part in table.partitions) or "none"
        raise TaskFailed(
            "TargetNotFound", f"no ext4, xfs or btrfs partition or logical volume on {disk} (partitions: {seen})"
        )
    return max(candidates, key=lambda c: (c[0], c[1]))[2]
