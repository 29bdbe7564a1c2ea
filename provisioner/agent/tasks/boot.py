"""bootloader: make the system written onto an md array boot from every member.

After write_image filled /dev/mdN (metadata 1.0 over whole disks, so each member carries the image from offset 0),
three things stand between the image and a machine that boots with either disk gone:

1. the target's mdadm.conf names the array, so its initramfs assembles it by UUID whatever the host name;
2. the target's initramfs carries that file (and the md modules): rebuilt in a chroot when the target has
   update-initramfs (Debian-likes) or dracut (Red Hat-likes);
3. on a BIOS machine every member has a boot loader in its own boot sectors: grub-install <member> in the chroot
   when the target has GRUB. A UEFI machine boots from the ESP inside the image, which metadata 1.0 mirrors.

A target without those tools (an image with its own boot loader and no initramfs tooling) gets only the
mdadm.conf; the task says what it skipped and why.
"""

from __future__ import annotations

import re
import shlex
from contextlib import contextmanager
from pathlib import Path

import provisioner.agent.tasks.params as p
from provisioner.agent.context import Context
from provisioner.agent.results import TaskFailed
from provisioner.agent.tasks.disks import MD_DEVICE
from provisioner.agent.tasks.target import _target_file, _write

# Where a target keeps its tools; usr/ first, since on a merged-/usr system sbin and bin are links into it.
_TOOL_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")
INITRAMFS_TOOLS = (
    ("update-initramfs", ["-u", "-k", "all"]),
    ("dracut", ["--regenerate-all", "-f"]),
)
# Red Hat-likes call GRUB 2's installer grub2-install.
GRUB_INSTALLERS = ("grub-install", "grub2-install")
# What the tools in the chroot need from the memory OS: device nodes (the members, the array), and the kernel's
# view of them (grub-probe and dracut read /sys, update-initramfs reads /proc).
CHROOT_MOUNTS = ("dev", "proc", "sys")
# update-initramfs -k all rebuilds one initramfs per installed kernel, each a compression of tens of MiB.
INITRAMFS_TIMEOUT_S = 1800
GRUB_TIMEOUT_S = 300
_UUID = re.compile(r"\bUUID=(\S+)")
_OS_RELEASE_FIELD = re.compile(r"^(ID|ID_LIKE)=(.*)$", re.MULTILINE)


def bootloader(ctx: Context, params: dict) -> str:
    device = p.text(params, "device")
    if not MD_DEVICE.match(device):
        raise p.invalid("device", "must be /dev/mdN")
    members = p.text_list(params, "members")
    if len(set(members)) != len(members):
        raise p.invalid("members", "each member may be named once")
    ctx.host.device(device)
    for member in members:
        ctx.host.device(member)
    report: list[str] = []

    def say(line: str) -> None:
        ctx.log(line)
        report.append(line)

    root = Path(ctx.host.target_root())
    ctx.progress(5, f"describing {device}")
    array = _array_line(ctx, device)
    conf = "etc/mdadm/mdadm.conf" if _debian_like(ctx) else "etc/mdadm.conf"
    _write_mdadm_conf(ctx, conf, device, array)
    say(f"mdadm.conf: /{conf} names the array: {array}")

    initramfs = next(((tool, args) for tool, args in INITRAMFS_TOOLS if _target_tool(ctx, tool)), None)
    grub = next((tool for tool in GRUB_INSTALLERS if _target_tool(ctx, tool)), None)
    efi = ctx.host.efi()
    if initramfs is None:
        say("initramfs: skipped, the target has neither update-initramfs nor dracut")
    if grub is None:
        say("boot loader: skipped, the target has no grub-install (the image brings its own boot loader)")
    elif efi:
        say(f"boot loader: {grub} skipped, the machine boots by UEFI from the ESP, which the array mirrors")
    install_grub = grub is not None and not efi
    if initramfs is not None or install_grub:
        with _chroot(ctx, root, say):
            if initramfs is not None:
                ctx.progress(20, f"rebuilding the target's initramfs with {initramfs[0]}")
                argv = [_target_tool(ctx, initramfs[0]), *initramfs[1]]
                _in_chroot(ctx, root, argv, "InitramfsFailed", INITRAMFS_TIMEOUT_S)
                say(f"initramfs: rebuilt in the target with {shlex.join(argv)}")
            if install_grub:
                for i, member in enumerate(members):
                    ctx.check_abort()
                    ctx.progress(60 + 35 * i // len(members), f"installing the boot loader on {member}")
                    argv = [_target_tool(ctx, grub), member]
                    _in_chroot(ctx, root, argv, "BootloaderFailed", GRUB_TIMEOUT_S)
                    say(f"boot loader: {grub} {member}")
    ctx.progress(100, f"{device} is ready to boot from {len(members)} member(s)")
    return "\n".join(report)


def _array_line(ctx: Context, device: str) -> str:
    done = ctx.host.run(["mdadm", "--detail", "--brief", device], block_devices=True, timeout=60)
    arrays = [line.strip() for line in done.output.splitlines() if line.startswith("ARRAY ")]
    if done.returncode != 0 or len(arrays) != 1:
        raise TaskFailed("RaidNotFound", f"mdadm --detail --brief {device}: {done.output.strip() or 'no array'}")
    return arrays[0]


def _debian_like(ctx: Context) -> bool:
    """Debian and its derivatives keep mdadm.conf in /etc/mdadm/; everyone else in /etc."""
    if _read_target(ctx, "etc/debian_version"):
        return True
    release = _read_target(ctx, "etc/os-release") or _read_target(ctx, "usr/lib/os-release")
    words = " ".join(value.strip("\"'") for _, value in _OS_RELEASE_FIELD.findall(release)).split()
    return "debian" in words or "ubuntu" in words


def _write_mdadm_conf(ctx: Context, relative: str, device: str, array: str) -> None:
    """Keep what the image's mdadm.conf says (MAILADDR, HOMEHOST, other arrays) but any earlier line for this
    array, which would make the initramfs look for an array that no longer exists."""
    match = _UUID.search(array)
    uuid = match.group(1) if match else None
    kept = []
    for line in _read_target(ctx, relative).splitlines():
        words = line.split()
        if words[:1] == ["ARRAY"] and (words[1:2] == [device] or (uuid and f"UUID={uuid}" in words)):
            continue
        kept.append(line)
    if not kept:
        kept.append("# Written by the provisioner agent: the array the root filesystem is on, assembled by UUID.")
    _write(_target_file(ctx, relative), "\n".join([*kept, array]) + "\n", 0o644)


def _read_target(ctx: Context, relative: str) -> str:
    """A text file of the target, "" when it has none (or only a link leading out of it)."""
    try:
        return _target_file(ctx, relative).read_text(errors="replace")
    except (OSError, TaskFailed):
        return ""


def _target_tool(ctx: Context, name: str) -> str | None:
    """The path, as seen inside the target, of a tool the target carries; None when it has none."""
    for directory in _TOOL_DIRS:
        try:
            path = _target_file(ctx, f"{directory}/{name}")
        except TaskFailed:
            continue  # an absolute link that, followed from the memory OS, leads out of the target
        if path.is_file():
            return f"/{directory}/{name}"
    return None


@contextmanager
def _chroot(ctx: Context, root: Path, say):
    """/dev, /proc and /sys of the memory OS bound into the target for the time of the block, and unbound after
    it whatever happened: a mount left behind would keep the target busy and its filesystem dirty."""
    mounted: list[Path] = []
    try:
        for name in CHROOT_MOUNTS:
            mountpoint = _target_file(ctx, name)
            mountpoint.mkdir(exist_ok=True)
            done = ctx.host.run(["mount", "--bind", f"/{name}", str(mountpoint)], block_devices=True, timeout=60)
            if done.returncode != 0:
                raise TaskFailed("TargetMountFailed", f"binding /{name} into the target failed: {done.output.strip()}")
            mounted.append(mountpoint)
        yield
    finally:
        for mountpoint in reversed(mounted):
            done = ctx.host.run(["umount", str(mountpoint)], block_devices=True, timeout=60)
            if done.returncode != 0:
                # Something in the chroot still holds it (a daemon a package script started): detach it anyway.
                ctx.host.run(["umount", "--lazy", str(mountpoint)], block_devices=True, timeout=60)
                say(f"chroot: {mountpoint} was busy ({done.output.strip()}); detached lazily")


def _in_chroot(ctx: Context, root: Path, argv: list[str], reason: str, timeout: float) -> None:
    command = ["chroot", str(root), *argv]
    done = ctx.host.run(command, block_devices=True, timeout=timeout)
    for line in done.output.splitlines():
        ctx.log(line)
    if done.returncode != 0:
        raise TaskFailed(reason, f"{shlex.join(argv)} in the target failed: {done.output.strip()}", done.output)
