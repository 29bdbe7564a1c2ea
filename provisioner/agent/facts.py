"""Hardware facts for `register` and the `inventory` task, read from /sys, /proc and DMI.

Every reader takes its root as an argument so tests can hand it a small fake sysfs tree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Block devices that are not disks an OS can be installed on.
_SKIP_DISK_PREFIXES = ("loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd", "rbd")


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        # Some attributes exist but refuse to be read (carrier on a down link answers EINVAL).
        return default


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def cpus(sys_root: Path = Path("/sys")) -> int:
    online = _read(sys_root / "devices/system/cpu/online")
    count = 0
    for chunk in filter(None, online.split(",")):
        first, _, last = chunk.partition("-")
        if _int(first) is None or (last and _int(last) is None):
            count = 0
            break
        count += (int(last) - int(first) + 1) if last else 1
    return count or os.cpu_count() or 1


def memory_bytes(proc_root: Path = Path("/proc")) -> int:
    for line in _read(proc_root / "meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _vpd_serial(device: Path) -> str:
    """A SCSI or SATA disk's serial number, as the drive reports it: the Unit Serial Number VPD page (0x80),
    its 4-byte header dropped. What a technician reads off the label; the wwid holds it only inside a
    vendor-prefixed string."""
    try:
        page = (device / "vpd_pg80").read_bytes()
    except OSError:
        return ""
    return page[4:].decode("ascii", "replace").strip(" \x00")


def disks(sys_root: Path = Path("/sys")) -> list[dict]:
    found = []
    for entry in sorted((sys_root / "block").glob("*")):
        name = entry.name
        if name.startswith(_SKIP_DISK_PREFIXES):
            continue
        # Removable media (USB sticks, virtual CD-ROMs of a BMC) must never be chosen as an install target.
        if _read(entry / "removable") == "1":
            continue
        sectors = _int(_read(entry / "size", "0")) or 0
        if sectors == 0:
            continue
        device = entry / "device"
        # NVMe keeps its world-wide id in the block device's own directory, SCSI/SATA in the device's.
        wwn = _read(entry / "wwid") or _read(device / "wwid")
        serial = _read(device / "serial") or _read(entry / "serial") or _vpd_serial(device) or wwn
        found.append(
            {
                "name": name,
                "path": f"/dev/{name}",
                # /sys/block/*/size counts 512-byte sectors whatever the logical block size.
                "size_bytes": sectors * 512,
                "model": _read(device / "model"),
                "serial": serial,
                "rotational": _read(entry / "queue/rotational") == "1",
                "wwn": wwn,
            }
        )
    return found


def nics(sys_root: Path = Path("/sys")) -> list[dict]:
    found = []
    for entry in sorted((sys_root / "class/net").glob("*")):
        # Only physical NICs have a `device` link; bridges, bonds, veths and lo do not.
        if not (entry / "device").exists():
            continue
        mac = _read(entry / "address").lower()
        if not mac or mac == "00:00:00:00:00:00":
            continue
        speed = _int(_read(entry / "speed"))
        found.append(
            {
                "name": entry.name,
                "mac": mac,
                "link": _read(entry / "carrier") == "1",
                # Drivers answer -1 or an unreadable file when the link is down or the speed is unknown.
                "speed_mbps": speed if speed and speed > 0 else None,
            }
        )
    return found


def dmi(sys_root: Path = Path("/sys")) -> dict:
    base = sys_root / "class/dmi/id"
    return {
        "vendor": _read(base / "sys_vendor"),
        "product": _read(base / "product_name"),
        "serial": _read(base / "product_serial"),
    }


def efi(sys_root: Path = Path("/sys")) -> bool:
    """Booted by UEFI: the kernel exposes the firmware's interface only then."""
    return (sys_root / "firmware/efi").is_dir()


def collect(sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc")) -> dict:
    return {
        "cpus": cpus(sys_root),
        "memory_bytes": memory_bytes(proc_root),
        "disks": disks(sys_root),
        "nics": nics(sys_root),
        "dmi": dmi(sys_root),
        "efi": efi(sys_root),
    }


def collect_sandbox(root: Path) -> dict:
    """Facts of a sandbox machine: its disks are the image files, the rest comes from `DIR/machine.json`.

    machine.json may set "cpus", "memory_bytes", "nics", "dmi", "efi", and per disk image "disks": {"sda":
    {"model": .., "serial": .., "wwn": .., "rotational": ..}}; the host's own NICs are never reported, since
    registering with them would claim to be another machine.
    """
    try:
        machine = json.loads((root / "machine.json").read_text())
    except FileNotFoundError:
        machine = {}
    found_disks = []
    for image in sorted((root / "disks").glob("*.img")):
        name = image.name.removesuffix(".img")
        declared = machine.get("disks", {}).get(name, {})
        found_disks.append(
            {
                "name": name,
                "path": f"/dev/{name}",
                "size_bytes": image.stat().st_size,
                "model": str(declared.get("model", "sandbox disk image")),
                "serial": str(declared.get("serial", f"sandbox-{name}")),
                "rotational": bool(declared.get("rotational", False)),
                "wwn": str(declared.get("wwn", "")),
            }
        )
    return {
        "cpus": int(machine.get("cpus", 2)),
        "memory_bytes": int(machine.get("memory_bytes", 4 << 30)),
        "disks": found_disks,
        "nics": [
            {
                "name": str(nic.get("name") or f"eth{i}"),
                "mac": str(nic["mac"]).lower(),
                "link": bool(nic.get("link", True)),
                "speed_mbps": nic.get("speed_mbps"),
            }
            for i, nic in enumerate(machine.get("nics", []))
        ],
        "dmi": {"vendor": "", "product": "", "serial": "", **machine.get("dmi", {})},
        "efi": bool(machine.get("efi", False)),
    }
