"""One disk layout, rendered for each installer: d-i's partman lines, kickstart's part/raid/logvol commands and
subiquity's curtin storage actions. Pure functions of a Layout; no Django here.

Every layout gives each member disk the same GPT partitions, in this order (kickstart on a BIOS machine's RAID
members: an MBR label and no BIOS boot partition, see kickstart()):
  1. the firmware's boot partition: a 1 MiB BIOS boot partition (GRUB's core image on a GPT disk), or with
     efi=True a 512 MiB EFI system partition;
  2. /boot, 1 GiB ext4: on RAID layouts a RAID 1 across every member (also for RAID 10), so GRUB reads it
     whichever disk is left;
  3. swap, when swap_mib > 0 and the root is not on LVM (on RAID layouts an array at the layout's level);
  4. the rest of the disk: the root filesystem, or the LVM physical volume (volume group vg0, logical volumes
     root and, when swap_mib > 0, swap); on RAID layouts an array at the layout's level.
Arrays are md0 (/boot), md1 (root or the PV) and md2 (swap).

The EFI system partition is never on an md array in the preseed and autoinstall renderings: each member has its
own. subiquity (curtin) installs GRUB into every ESP marked as a grub device; d-i mounts and fills one, so a
machine that loses that disk needs the others' ESPs filled after the install. Kickstart instead mirrors the ESP
as a RAID 1 (anaconda writes it with metadata 1.0, the superblock at the end, so the firmware reads each member
as a plain FAT partition), which is anaconda's supported way of putting /boot/efi on software RAID.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

KINDS = ("single", "raid1", "raid10")
FILESYSTEMS = ("ext4", "xfs", "btrfs")
VOLUME_GROUP = "vg0"
BIOS_BOOT_MIB = 1
ESP_MIB = 512
BOOT_MIB = 1024
_DEVICE = re.compile(r"/dev/[A-Za-z0-9/_.:-]+")


@dataclass(frozen=True)
class Layout:
    """Where and how the installer lays out the system disks; `devices` are already resolved paths."""

    kind: str = "single"  # single | raid1 | raid10
    devices: tuple[str, ...] = ()
    lvm: bool = False  # the root (and swap) as logical volumes of vg0
    filesystem: str = "ext4"  # the root's: ext4 | xfs | btrfs
    swap_mib: int = 0  # 0: no swap
    efi: bool = False  # the machine boots by UEFI: an EFI system partition instead of a BIOS boot partition

    def __post_init__(self) -> None:
        object.__setattr__(self, "devices", tuple(self.devices))
        if self.kind not in KINDS:
            raise ValueError(f"layout kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        for device in self.devices:
            if not isinstance(device, str) or not _DEVICE.fullmatch(device):
                raise ValueError(f"layout {self.kind}: a device must be a /dev path, not {device!r}")
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"layout {self.kind}: a device is named twice in {', '.join(self.devices)}")
        count = len(self.devices)
        if self.kind == "single" and count != 1:
            raise ValueError(f"layout single needs exactly 1 device, got {count}")
        if self.kind == "raid1" and count < 2:
            raise ValueError(f"layout raid1 needs at least 2 devices, got {count}")
        if self.kind == "raid10" and (count < 4 or count % 2):
            raise ValueError(f"layout raid10 needs an even number of devices, at least 4, got {count}")
        if self.filesystem not in FILESYSTEMS:
            raise ValueError(f"layout filesystem must be one of {', '.join(FILESYSTEMS)}, not {self.filesystem!r}")
        if isinstance(self.swap_mib, bool) or not isinstance(self.swap_mib, int) or self.swap_mib < 0:
            raise ValueError(f"layout swap_mib must be a whole number of MiB, 0 or more, not {self.swap_mib!r}")
        if not isinstance(self.lvm, bool) or not isinstance(self.efi, bool):
            raise ValueError("layout lvm and efi must be true or false")

    @property
    def level(self) -> int | None:
        """The RAID level of the root array; None for a single disk."""
        return {"raid1": 1, "raid10": 10}.get(self.kind)

    @property
    def raid(self) -> bool:
        return self.level is not None

    @property
    def swap_partition(self) -> bool:
        """Swap lives on its own partition (or array) rather than in the volume group."""
        return self.swap_mib > 0 and not self.lvm

    def partitions(self) -> dict[str, int]:
        """Each role's partition number on every member: firmware, boot, swap (when any), root."""
        numbers = {"firmware": 1, "boot": 2}
        if self.swap_partition:
            numbers["swap"] = 3
        numbers["root"] = len(numbers) + 1
        return numbers


def single(disk: str, *, lvm: bool = True, swap_mib: int = 1024, efi: bool = False) -> Layout:
    """The default when nothing else is said: one disk, root on LVM with a swap volume, as the stock answer
    files had before layouts (their guided recipes sized swap by memory; this one is fixed)."""
    return Layout("single", (disk,), lvm=lvm, swap_mib=swap_mib, efi=efi)


def partition(device: str, number: int) -> str:
    """The path of partition `number` of `device`: sda -> sda2, nvme0n1 -> nvme0n1p2, by-id names -> -part2."""
    if device.startswith("/dev/disk/"):
        return f"{device}-part{number}"
    return f"{device}p{number}" if device[-1].isdigit() else f"{device}{number}"


def _name(device: str) -> str:
    return device.removeprefix("/dev/")


def _mb(mib: int) -> int:
    # partman's recipe sizes are in megabytes of 10^6 bytes.
    return math.ceil(mib * 1.048576)


# --- debian-installer (partman) ---


def _recipe_entry(size: str, fs: str, *options: str) -> str:
    return " ".join((size, fs, *options, "."))


def _fixed(mib: int) -> str:
    mb = _mb(mib)
    return f"{mb} {mb} {mb}"


_REST = "1000 10000 -1"


def _format(filesystem: str, mountpoint: str) -> tuple[str, ...]:
    return ("method{ format }", "format{ }", "use_filesystem{ }", f"filesystem{{ {filesystem} }}",
            f"mountpoint{{ {mountpoint} }}")  # fmt: skip


def _preseed_recipe(layout: Layout) -> list[str]:
    entries = []
    if layout.efi:
        entries.append(_recipe_entry(_fixed(ESP_MIB), "free", "$iflabel{ gpt }", "$reusemethod{ }", "method{ efi }",
                                     "format{ }"))  # fmt: skip
    else:
        entries.append(_recipe_entry("1 1 1", "free", "$iflabel{ gpt }", "$reusemethod{ }", "method{ biosgrub }"))
    # On RAID the physical entries are array members ($lvmignore: not volumes) and the LVM entries become
    # logical volumes of the array's volume group ($defaultignore: no partition of their own).
    member = ("$primary{ }", "$lvmignore{ }", "method{ raid }")
    volume = ("$defaultignore{ }", "$lvmok{ }") if layout.raid else ("$lvmok{ }",)
    if layout.raid:
        entries.append(_recipe_entry(_fixed(BOOT_MIB), "raid", *member))
    else:
        entries.append(_recipe_entry(_fixed(BOOT_MIB), "ext4", "$primary{ }", "$bootable{ }",
                                     *_format("ext4", "/boot")))  # fmt: skip
    if layout.swap_partition:
        if layout.raid:
            entries.append(_recipe_entry(_fixed(layout.swap_mib), "raid", *member))
        else:
            entries.append(_recipe_entry(_fixed(layout.swap_mib), "linux-swap", "$primary{ }", "method{ swap }",
                                         "format{ }"))  # fmt: skip
    if layout.raid:
        entries.append(_recipe_entry(_REST, "raid", *member))
    if layout.lvm:
        if layout.swap_mib:
            entries.append(_recipe_entry(_fixed(layout.swap_mib), "linux-swap", *volume, "lv_name{ swap }",
                                         "method{ swap }", "format{ }"))  # fmt: skip
        entries.append(_recipe_entry(_REST, layout.filesystem, *volume, "lv_name{ root }",
                                     *_format(layout.filesystem, "/")))  # fmt: skip
    elif not layout.raid:
        entries.append(_recipe_entry(_REST, layout.filesystem, "$primary{ }", *_format(layout.filesystem, "/")))
    return entries


def _preseed_raid_recipe(layout: Layout) -> list[str]:
    numbers = layout.partitions()
    count = len(layout.devices)

    def members(role: str) -> str:
        return "#".join(partition(device, numbers[role]) for device in layout.devices)

    arrays = [f"1 {count} 0 ext4 /boot {members('boot')} ."]
    if layout.swap_partition:
        arrays.append(f"{layout.level} {count} 0 swap - {members('swap')} .")
    if layout.lvm:
        arrays.append(f"{layout.level} {count} 0 lvm - {members('root')} .")
    else:
        arrays.append(f"{layout.level} {count} 0 {layout.filesystem} / {members('root')} .")
    return arrays


def _continued(key: str, kind: str, values: list[str]) -> str:
    # One debconf value over several lines: every line but the last ends in a backslash.
    return f"d-i {key} {kind} \\\n" + " \\\n".join(f"    {value}" for value in values)


def preseed(layout: Layout) -> str:
    """d-i partman and grub-installer lines for `layout` (no trailing newline)."""
    method = "raid" if layout.raid else "lvm" if layout.lvm else "regular"
    lines = [
        f"d-i partman-auto/disk string {' '.join(layout.devices)}",
        f"d-i partman-auto/method string {method}",
        "d-i partman-lvm/device_remove_lvm boolean true",
        "d-i partman-md/device_remove_md boolean true",
        "d-i partman-auto/purge_lvm_from_device boolean true",
        "d-i partman-lvm/confirm boolean true",
        "d-i partman-lvm/confirm_nooverwrite boolean true",
        "d-i partman-md/confirm boolean true",
        "d-i partman-md/confirm_nooverwrite boolean true",
        # GPT whatever the disk's size, so the layout is the same on a 256 GB SSD and a 16 TB drive.
        "d-i partman-partitioning/choose_label select gpt",
        "d-i partman-partitioning/default_label string gpt",
    ]
    if layout.lvm:
        lines += [
            f"d-i partman-auto-lvm/new_vg_name string {VOLUME_GROUP}",
            "d-i partman-auto-lvm/guided_size string max",
        ]
    lines += [
        "d-i partman-auto/choose_recipe select provisioner",
        _continued("partman-auto/expert_recipe", "string", ["provisioner ::", *_preseed_recipe(layout)]),
    ]
    if layout.raid:
        lines.append(_continued("partman-auto-raid/recipe", "string", _preseed_raid_recipe(layout)))
        # A mirror that lost a disk must still boot, not stop in the initramfs asking.
        lines.append("d-i mdadm/boot_degraded boolean true")
    if not layout.swap_mib:
        # Without this partman stops to ask whether to go back and add swap.
        lines.append("d-i partman-basicfilesystems/no_swap boolean false")
    lines += [
        "d-i partman-partitioning/confirm_write_new_label boolean true",
        "d-i partman/choose_partition select finish",
        "d-i partman/confirm boolean true",
        "d-i partman/confirm_nooverwrite boolean true",
        "d-i partman/mount_style select uuid",
    ]
    if layout.efi:
        # Also at EFI/BOOT/BOOTX64.EFI: firmware that forgot its boot entries still finds the loader.
        lines.append("d-i grub-installer/force-efi-extra-removable boolean true")
    else:
        lines.append("d-i partman-efi/non_efi_system boolean true")
    lines += [
        "d-i grub-installer/only_debian boolean true",
        f"d-i grub-installer/bootdev string {' '.join(layout.devices)}",
    ]
    return "\n".join(lines)


# --- kickstart (anaconda) ---


def kickstart(layout: Layout) -> str:
    """Kickstart storage commands for `layout` (no trailing newline): anaconda installs GRUB on every member of
    the /boot array by itself."""
    names = [_name(device) for device in layout.devices]
    drives = ",".join(names)
    # pykickstart refuses a second biosboot partition (it takes "biosboot" for a mount point named twice), so
    # a BIOS machine's RAID members get an MBR label instead: GRUB's core image goes in the gap after the MBR of
    # each, and no partition is needed for it. That label limits those disks to 2 TiB.
    label = "msdos" if layout.raid and not layout.efi else "gpt"
    lines = [
        f"ignoredisk --only-use={drives}",
        "zerombr",
        f"clearpart --all --initlabel --disklabel={label} --drives={drives}",
    ]
    fs = layout.filesystem
    root_fs = f"--fstype={fs}"

    def members(array: int, size: str) -> list[str]:
        ids = [f"raid.{array}{index:02d}" for index in range(len(names))]
        lines.extend(f"part {member} {size} --ondisk={name}" for member, name in zip(ids, names, strict=True))
        return ids

    if not layout.raid:
        disk = names[0]
        if layout.efi:
            lines.append(f"part /boot/efi --fstype=efi --size={ESP_MIB} --ondisk={disk}")
        else:
            lines.append(f"part biosboot --fstype=biosboot --size={BIOS_BOOT_MIB} --ondisk={disk}")
        lines.append(f"part /boot --fstype=ext4 --size={BOOT_MIB} --ondisk={disk}")
        if layout.swap_partition:
            lines.append(f"part swap --fstype=swap --size={layout.swap_mib} --ondisk={disk}")
        if layout.lvm:
            lines.append(f"part pv.01 --size=1 --grow --ondisk={disk}")
        else:
            lines.append(f"part / {root_fs} --size=1 --grow --ondisk={disk}")
    else:
        level = f"--level=RAID{layout.level}"
        if layout.efi:
            esp = members(1, f"--size={ESP_MIB}")
            lines.append(f"raid /boot/efi --device=efi --level=RAID1 --fstype=efi {' '.join(esp)}")
        boot = members(2, f"--size={BOOT_MIB}")
        lines.append(f"raid /boot --device=boot --level=RAID1 --fstype=ext4 {' '.join(boot)}")
        if layout.swap_partition:
            swap = members(3, f"--size={layout.swap_mib}")
            lines.append(f"raid swap --device=swap {level} --fstype=swap {' '.join(swap)}")
        root = members(4, "--size=1 --grow")
        if layout.lvm:
            lines.append(f"raid pv.01 --device=pv {level} {' '.join(root)}")
        else:
            lines.append(f"raid / --device=root {level} {root_fs} {' '.join(root)}")
    if layout.lvm:
        lines.append(f"volgroup {VOLUME_GROUP} pv.01")
        if layout.swap_mib:
            lines.append(f"logvol swap --vgname={VOLUME_GROUP} --name=swap --fstype=swap --size={layout.swap_mib}")
        lines.append(f"logvol / --vgname={VOLUME_GROUP} --name=root {root_fs} --size=1 --grow")
    lines.append(f"bootloader --location=mbr --boot-drive={names[0]} --driveorder={drives}")
    return "\n".join(lines)


# --- autoinstall (subiquity, curtin's storage actions) ---


def autoinstall(layout: Layout) -> dict[str, Any]:
    """subiquity's `storage:` value for `layout`: curtin actions in the order they are applied, and no
    swap file (swap, when asked for, is a partition, an array or a volume). A size of -1 is subiquity's
    "the rest of the disk" (or of the volume group)."""
    numbers = layout.partitions()
    config: list[dict[str, Any]] = []
    by_role: dict[str, list[str]] = {role: [] for role in numbers}
    for index, device in enumerate(layout.devices):
        disk = f"disk{index}"
        action = {"type": "disk", "id": disk, "path": device, "ptable": "gpt", "wipe": "superblock-recursive",
                  "preserve": False}  # fmt: skip
        if not layout.efi:
            action["grub_device"] = True
        config.append(action)
        sizes = {"firmware": f"{ESP_MIB if layout.efi else BIOS_BOOT_MIB}M", "boot": f"{BOOT_MIB}M",
                 "swap": f"{layout.swap_mib}M", "root": -1}  # fmt: skip
        for role, number in numbers.items():
            part = {"type": "partition", "id": f"{disk}-part{number}", "device": disk, "number": number,
                    "size": sizes[role], "wipe": "superblock", "preserve": False}  # fmt: skip
            if role == "firmware":
                part["flag"] = "boot" if layout.efi else "bios_grub"
                if layout.efi:
                    part["grub_device"] = True
            elif layout.raid:
                part["flag"] = "raid"
            elif role == "swap":
                part["flag"] = "swap"
            config.append(part)
            by_role[role].append(part["id"])
    volumes: dict[str, str] = {}  # role -> the id that gets the filesystem
    for role in numbers:
        if role == "firmware":
            continue
        if layout.raid:
            array = {"boot": "md0", "root": "md1", "swap": "md2"}[role]
            config.append({"type": "raid", "id": array, "name": array, "raidlevel": 1 if role == "boot" else
                           layout.level, "devices": by_role[role], "preserve": False})  # fmt: skip
            volumes[role] = array
        else:
            volumes[role] = by_role[role][0]
    if layout.lvm:
        config.append({"type": "lvm_volgroup", "id": VOLUME_GROUP, "name": VOLUME_GROUP,
                       "devices": [volumes["root"]], "preserve": False})  # fmt: skip
        if layout.swap_mib:
            config.append({"type": "lvm_partition", "id": "lv-swap", "name": "swap", "volgroup": VOLUME_GROUP,
                           "size": f"{layout.swap_mib}M", "preserve": False})  # fmt: skip
            volumes["swap"] = "lv-swap"
        config.append({"type": "lvm_partition", "id": "lv-root", "name": "root", "volgroup": VOLUME_GROUP,
                       "size": -1, "preserve": False})  # fmt: skip
        volumes["root"] = "lv-root"
    # Mounts in the order curtin applies them: a mount point's parent first.
    for role, fstype, path in [("root", layout.filesystem, "/"), ("boot", "ext4", "/boot")]:
        config.append({"type": "format", "id": f"{role}-fs", "volume": volumes[role], "fstype": fstype,
                       "preserve": False})  # fmt: skip
        config.append({"type": "mount", "id": f"{role}-mount", "device": f"{role}-fs", "path": path})
    if layout.efi:
        # Every member's ESP is formatted; the first is mounted, and curtin fills each one marked grub_device.
        for part_id in by_role["firmware"]:
            config.append({"type": "format", "id": f"{part_id}-fs", "volume": part_id, "fstype": "fat32",
                           "preserve": False})  # fmt: skip
        first = by_role["firmware"][0]
        config.append({"type": "mount", "id": f"{first}-mount", "device": f"{first}-fs", "path": "/boot/efi"})
    if layout.swap_mib:
        config.append({"type": "format", "id": "swap-fs", "volume": volumes["swap"], "fstype": "swap",
                       "preserve": False})  # fmt: skip
        config.append({"type": "mount", "id": "swap-mount", "device": "swap-fs", "path": "none"})
    return {"config": config, "swap": {"size": 0}}


def autoinstall_yaml(layout: Layout, indent: int = 4) -> str:
    """autoinstall(layout) as the YAML lines of a `storage:` value (no trailing newline), each indented by
    `indent` spaces: the stock user-data puts it under `  storage:` inside `autoinstall:`. Each action is one
    line of JSON, which YAML reads as a flow mapping, so no YAML library is needed to write it."""
    value = autoinstall(layout)
    lines = ["config:", *(f"  - {json.dumps(action)}" for action in value["config"])]
    lines += ["swap:", f"  size: {value['swap']['size']}"]
    return "\n".join(" " * indent + line for line in lines)


def context(layout: Layout) -> dict[str, Any]:
    """The `storage` value of an answer-file template's context (plain data)."""
    return {
        "kind": layout.kind,
        "devices": list(layout.devices),
        "lvm": layout.lvm,
        "efi": layout.efi,
        "preseed": preseed(layout),
        "kickstart": kickstart(layout),
        "autoinstall": autoinstall_yaml(layout),
    }
