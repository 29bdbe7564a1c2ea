"""Destructive disk tasks: wipe_disks, raid, partition."""

from __future__ import annotations

import os
import re
import shlex
import stat

import provisioner.agent.tasks.params as p
from provisioner.agent.context import Context
from provisioner.agent.results import TaskFailed
from provisioner.agent.tasks.fit import refuse_unless_it_fits

MIB = 1024 * 1024

# Partition type codes as sgdisk spells them.
ESP = "ef00"
BIOS_BOOT = "ef02"
LINUX_ROOT_X86_64 = "8304"

# ESP of 512 MiB: room for several kernels with shim and a firmware update capsule; BIOS boot needs 1 MiB for
# GRUB's core image.
LAYOUTS = {
    "uefi": [("+512M", ESP, "EFI system"), ("0", LINUX_ROOT_X86_64, "root")],
    "bios": [("+1M", BIOS_BOOT, "BIOS boot"), ("0", LINUX_ROOT_X86_64, "root")],
}

# mdadm level -> (least members, how many members' worth of space the array holds)
RAID_LEVELS = {
    0: (2, lambda n: n),
    1: (2, lambda n: 1),
    4: (3, lambda n: n - 1),
    5: (3, lambda n: n - 1),
    6: (4, lambda n: n - 2),
    10: (2, lambda n: n // 2),
}
MD_DEVICE = re.compile(r"^/dev/md\d+$")
# md superblock versions: 1.2 sits 4 KiB from the start (mdadm's default); 1.0 sits at the end, so over whole
# disks a RAID 1 member holds the array's data from offset 0 and its firmware boots it as if it were a plain disk
# (its MBR and boot loader, or its ESP), with the other member missing.
METADATA_VERSIONS = ("1.0", "1.2")


def open_for_write(path: str) -> int:
    flags = os.O_WRONLY
    if stat.S_ISBLK(os.stat(path).st_mode):
        # O_EXCL on a block device fails while it is mounted or held by md/LVM: never write under a live system.
        flags |= os.O_EXCL
    try:
        return os.open(path, flags)
    except OSError as exc:
        # Busy is often brief (udev probing a new table, an array still stopping): worth another attempt later.
        raise TaskFailed("DiskBusy", f"cannot open {path} exclusively: {exc.strerror}", retryable=True) from exc


def ensure_unused(path: str) -> None:
    """Fail with DiskBusy before anything is changed if the disk is mounted or held (the tools used afterwards
    are told to force their way through signatures, and would not stop at a mounted filesystem)."""
    os.close(open_for_write(path))


def device_size(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def _zero_ends(path: str) -> None:
    """Zero the first and the last MiB: partition tables, the GPT backup header, md 0.90/1.0 superblocks."""
    fd = open_for_write(path)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        span = min(MIB, size)
        zeros = bytes(span)
        os.pwrite(fd, zeros, 0)
        if size > span:
            os.pwrite(fd, zeros, size - span)
        os.fsync(fd)
    finally:
        os.close(fd)


def release(ctx: Context, devices: list[tuple[str, str]]) -> None:
    """Stop what holds the disks, then fail with DiskBusy before anything is changed if one is still in use."""
    for name, dev in devices:
        for holder in ctx.host.holders(dev):
            # An array assembled from an earlier install holds its members; it goes, the disks stay.
            ctx.log(f"{name}: stopping {holder}, which holds it")
            ctx.host.run(["mdadm", "--stop", holder], block_devices=True)
    for _, dev in devices:
        ensure_unused(dev)


def wipe_disks(ctx: Context, params: dict) -> str:
    names = p.text_list(params, "disks")
    # Resolve all before touching any: a typo in the last name must not leave the first disks wiped.
    devices = [(name, ctx.host.device(name)) for name in names]
    image = params.get("image_url")
    if isinstance(image, str) and image and devices:
        # The image goes to the first disk: one that cannot hold it is refused while every disk is intact.
        refuse_unless_it_fits(image, devices[0][0], device_size(devices[0][1]))
    release(ctx, devices)
    out = []
    for i, (name, dev) in enumerate(devices):
        ctx.check_abort()
        ctx.progress(i * 100 // len(devices), f"wiping {name}")
        discarded = ctx.host.discard(dev)
        done = ctx.host.run(["wipefs", "--all", "--force", dev])
        if done.returncode != 0:
            raise TaskFailed("WipeFailed", f"wipefs on {name} failed: {done.output.strip()}", done.output)
        _zero_ends(dev)
        line = f"{name}: signatures removed, first and last MiB zeroed" + (", discarded" if discarded else "")
        ctx.log(line)
        out.append(line)
    ctx.progress(100, "disks wiped")
    return "\n".join(out)


def raid(ctx: Context, params: dict) -> str:
    device = p.text(params, "device")
    if not MD_DEVICE.match(device):
        raise p.invalid("device", "must be /dev/mdN")
    level = params.get("level")
    if isinstance(level, str) and level.removeprefix("raid").isdigit():
        level = int(level.removeprefix("raid"))
    if level not in RAID_LEVELS:
        raise p.invalid("level", f"one of {sorted(RAID_LEVELS)} is required")
    members = p.text_list(params, "members")
    least, capacity = RAID_LEVELS[level]
    if len(members) < least or len(set(members)) != len(members):
        raise p.invalid("members", f"RAID {level} needs at least {least} distinct members")
    metadata = params.get("metadata", "1.2")
    if isinstance(metadata, float):
        metadata = f"{metadata:.1f}"  # 1.0 sent as a JSON number
    if metadata not in METADATA_VERSIONS:
        raise p.invalid("metadata", f"one of {list(METADATA_VERSIONS)} is required")
    paths = [ctx.host.device(m) for m in members]
    smallest = min(device_size(path) for path in paths)
    argv = [
        "mdadm", "--create", device, "--run", f"--level={level}", f"--raid-devices={len(paths)}",
        f"--metadata={metadata}", *paths,
    ]  # fmt: skip
    ctx.progress(10, f"creating {device} (RAID {level}, metadata {metadata})")
    done = ctx.host.run(argv, block_devices=True, creates=(device, capacity(len(paths)) * smallest))
    if done.returncode != 0:
        # A member still held (udev probing it, an old array not yet stopped) is worth another attempt later.
        busy = "busy" in done.output.lower()
        message = f"mdadm could not create {device}: {done.output.strip()}"
        raise TaskFailed("RaidFailed", message, done.output, retryable=busy)
    ctx.host.device(device)
    if metadata == "1.0":
        ctx.log(f"{device}: superblocks at the end of the members; their data starts at offset 0")
    ctx.progress(100, f"{device} created")
    return f"{shlex.join(argv)}\n{done.output}".strip()


def partition(ctx: Context, params: dict) -> str:
    disk = p.text(params, "disk")
    layout = p.text(params, "layout")
    if layout not in LAYOUTS:
        raise p.invalid("layout", f"one of {sorted(LAYOUTS)} is required")
    dev = ctx.host.device(disk)
    ensure_unused(dev)
    # --clear replaces whatever table is there in the same run (sgdisk pauses a second after every write, so
    # one run instead of two matters when a rack is partitioned at once).
    argv = ["sgdisk", "--clear"]
    for number, (size, code, label) in enumerate(LAYOUTS[layout], start=1):
        argv += [f"--new={number}:0:{size}", f"--typecode={number}:{code}", f"--change-name={number}:{label}"]
    argv.append(dev)
    ctx.progress(10, f"writing a {layout} GPT layout to {disk}")
    done = ctx.host.run(argv, timeout=120)
    if done.returncode != 0:
        # A table too damaged to load stops sgdisk before --clear; --zap-all destroys it without reading it.
        ctx.log(f"sgdisk could not replace the table of {disk} ({done.output.strip()}); zapping it first")
        ctx.host.run(["sgdisk", "--zap-all", dev], timeout=120)
        done = ctx.host.run(argv, timeout=120)
    if done.returncode != 0:
        raise TaskFailed("PartitionFailed", f"sgdisk could not partition {disk}: {done.output.strip()}", done.output)
    ctx.host.reread_partitions(dev)
    table = ctx.host.run(["sgdisk", "--print", dev], timeout=60)
    ctx.progress(100, f"{disk} partitioned ({layout})")
    return table.output
