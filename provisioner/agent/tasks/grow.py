"""grow_root: an image is made small; once written to a larger disk its root is grown to fill it.

The partition that holds the root (or the LVM physical volume holding the root logical volume) is grown to the
end of the disk with sfdisk, which also moves a GPT's backup header to the disk's new end; then the physical
volume and the logical volume; then the filesystem.
"""

from __future__ import annotations

import provisioner.agent.tasks.params as p
from provisioner.agent import storage
from provisioner.agent.context import Context
from provisioner.agent.results import TaskFailed

# Grown while mounted, the only way they grow; ext4 is grown unmounted, which needs no kernel support for online
# resizing nor CAP_SYS_RESOURCE, after the full check resize2fs insists on. "{dev}": its device, "{mnt}": where
# it is mounted.
GROW_MOUNTED = {
    "xfs": ["xfs_growfs", "{mnt}"],
    "btrfs": ["btrfs", "filesystem", "resize", "max", "{mnt}"],
}
# e2fsck -p: 0 clean, 1 errors fixed; anything more needs a person.
E2FSCK_FIXED = 1


def grow_root(ctx: Context, params: dict) -> str:
    disk = p.text(params, "disk")
    host = ctx.host
    dev = host.device(disk)
    # The root's partition must be let go before it changes: unmount the target, deactivate its volume group.
    host.release()
    host.reread_partitions(disk)
    root = storage.find_root(host, disk)
    host.deactivate_volume_groups()
    table = storage.read_table(host, dev)
    part = root.partition
    last = table.last()
    if last.number != part.number:
        raise TaskFailed(
            "GrowFailed",
            f"partition {part.number} of {disk}, which holds the root, cannot grow: partition {last.number} follows it",
        )
    if table.label == "dos" and part.number > 4:
        raise TaskFailed("GrowFailed", f"the root is on logical partition {part.number} of {disk}: only primaries grow")
    ctx.progress(10, f"growing partition {part.number} of {disk}")
    # ", +": same start, as large as the free space after it allows.
    done = host.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-N", str(part.number), dev], input=", +\n")
    if done.returncode != 0:
        raise TaskFailed("GrowFailed", f"sfdisk could not grow partition {part.number}: {done.output.strip()}")
    grown = next(q for q in storage.read_table(host, dev).partitions if q.number == part.number)
    sector = table.sector_size
    lines = [f"partition {part.number}: {part.size * sector} -> {grown.size * sector} bytes"]
    host.reread_partitions(disk)
    part_dev = host.partition_device(disk, part.number)
    fs_dev = part_dev
    if root.lv is not None:
        lines += _grow_lvm(ctx, part_dev, root.lv)
        fs_dev = next(lv.path for lv in host.logical_volumes(part_dev) if lv.name == root.lv.name)
    ctx.progress(60, f"growing the {root.fstype} filesystem on {fs_dev}")
    try:
        _grow_filesystem(ctx, root.fstype, fs_dev)
    finally:
        host.release()
    lines.append(f"{root.fstype} on {fs_dev} grown")
    ctx.progress(100, lines[-1])
    return "\n".join(lines)


def _grow_lvm(ctx: Context, pv: str, lv: storage.LogicalVolume) -> list[str]:
    host = ctx.host
    ctx.progress(40, f"growing physical volume {pv} and logical volume {lv.vg}/{lv.name}")
    done = host.run(["pvresize", pv], timeout=300, block_devices=True)
    if done.returncode != 0:
        raise TaskFailed("GrowFailed", f"pvresize {pv} failed: {done.output.strip()}")
    free = host.run(["vgs", "--noheadings", "-o", "vg_free_count", lv.vg], timeout=60, block_devices=True)
    if free.returncode == 0 and free.output.strip() == "0":
        return [f"physical volume {pv} grown; {lv.vg} has no free extents for {lv.name}"]
    done = host.run(["lvextend", "-l", "+100%FREE", f"{lv.vg}/{lv.name}"], timeout=300, block_devices=True)
    if done.returncode != 0:
        raise TaskFailed("GrowFailed", f"lvextend {lv.vg}/{lv.name} failed: {done.output.strip()}")
    return [f"physical volume {pv} grown", f"logical volume {lv.vg}/{lv.name} extended over the free space"]


def _grow_filesystem(ctx: Context, fstype: str, dev: str) -> None:
    host = ctx.host
    if fstype == "ext4":
        done = host.run(["e2fsck", "-f", "-p", dev], timeout=3600, block_devices=True)
        if done.returncode > E2FSCK_FIXED:
            raise TaskFailed("GrowFailed", f"e2fsck found errors it cannot fix on {dev}: {done.output.strip()}")
        done = host.run(["resize2fs", dev], timeout=3600, block_devices=True)
        if done.returncode != 0:
            raise TaskFailed("GrowFailed", f"resize2fs failed on {dev}: {done.output.strip()}")
        return
    with host.mounted(dev) as mnt:
        argv = [arg.format(dev=dev, mnt=mnt) for arg in GROW_MOUNTED[fstype]]
        done = host.run(argv, timeout=3600, block_devices=True)
        if done.returncode != 0:
            raise TaskFailed("GrowFailed", f"{argv[0]} failed on {dev}: {done.output.strip()}")
