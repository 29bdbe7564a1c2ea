"""Hardware facts for `register` and the `inventory` task, read from /sys, /proc and DMI; and the full facts of
commissioning (`collect_full`), which add what the hardware tools and the network say.

Every reader takes its root, and every tool reader the command runner, as an argument so tests can hand it a
small fake sysfs tree and the real output of a tool. A missing tool or an unreadable file is a note in the facts,
never an exception: commissioning a machine that lacks one tool still records everything else.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from provisioner.agent import ipmi, lldp, parsers, tools
from provisioner.agent.results import TaskFailed

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


def _machine(root: Path) -> dict:
    try:
        return json.loads((root / "machine.json").read_text())
    except FileNotFoundError:
        return {}


def collect_sandbox(root: Path) -> dict:
    """Facts of a sandbox machine: its disks are the image files, the rest comes from `DIR/machine.json`.

    machine.json may set "cpus", "memory_bytes", "nics", "dmi", "efi", and per disk image "disks": {"sda":
    {"model": .., "serial": .., "wwn": .., "rotational": ..}}; the host's own NICs are never reported, since
    registering with them would claim to be another machine.
    """
    machine = _machine(root)
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


# -- full facts (commissioning) ---------------------------------------------------------------------------------

Runner = Callable[..., tools.Completed]
Listener = Callable[[list[str], float], "tuple[dict[str, dict], list[str], float]"]

# pciutils' pci.ids (Debian's pci.ids package), then hwdata's (RHEL, Fedora).
PCI_IDS = (Path("/usr/share/misc/pci.ids"), Path("/usr/share/hwdata/pci.ids"))
TOOL_TIMEOUT_S = 60
# smartctl waits for a spun-down disk to spin up before it answers.
SMART_TIMEOUT_S = 90
# Files of /sys/class/dmi/id; the serials are readable by root only.
FIRMWARE_FIELDS = (
    "bios_vendor", "bios_version", "bios_date", "board_vendor", "board_name", "board_serial", "chassis_serial",
)  # fmt: skip
NO_SMART = {"available": False, "passed": None, "detail": ""}
LLDP_KEYS = ("chassis_id", "system_name", "port_id", "port_description")


def _tool(run: Runner, argv: list[str], notes: list[str], lost: str, timeout: float = TOOL_TIMEOUT_S):
    """Run a tool; None (and a note saying what is `lost`) when it is missing or hangs."""
    try:
        return run(argv, timeout)
    except TaskFailed as exc:
        notes.append(f"{exc.message}: {lost}")
        return None


def _last_line(text: str) -> str:
    """What a failing tool said last: its complaint comes after the lines saying what it tried."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return lines[-1] if lines else "no output"


def cpu(sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc")) -> dict:
    """Model and shape of the processors: sockets are physical packages, cores distinct (package, die, core)
    ids, threads the logical CPUs; mhz the highest frequency the CPU is rated for when cpufreq says, else the
    current one."""
    model, mhz_text = "", ""
    cpuinfo_cores: set[tuple[str, str]] = set()
    physical = core = ""
    for line in _read(proc_root / "cpuinfo").splitlines() + [""]:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and not model:
            model = value
        elif key == "cpu MHz" and not mhz_text:
            mhz_text = value
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
        elif not key and physical:
            cpuinfo_cores.add((physical, core))
            physical = core = ""
    packages: set[str] = set()
    cores: set[tuple[str, str, str]] = set()
    threads = 0
    for topology in (sys_root / "devices/system/cpu").glob("cpu[0-9]*/topology"):
        package = _read(topology / "physical_package_id")
        if not package:
            continue
        threads += 1
        packages.add(package)
        cores.add((package, _read(topology / "die_id"), _read(topology / "core_id")))
    if not threads:
        # No topology in sysfs (an old or unusual kernel): what /proc/cpuinfo says, else one socket.
        threads = cpus(sys_root)
        packages = {p for p, _ in cpuinfo_cores} or {"0"}
        cores = {(p, "", c) for p, c in cpuinfo_cores}
    max_khz = _int(_read(sys_root / "devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"))
    try:
        mhz = max_khz // 1000 if max_khz else round(float(mhz_text))
    except ValueError:
        mhz = 0
    return {"model": model, "sockets": len(packages), "cores": len(cores) or threads, "threads": threads, "mhz": mhz}


def memory_modules(run: Runner, notes: list[str]) -> list[dict]:
    done = _tool(run, ["dmidecode", "-t", "17"], notes, "memory modules not read")
    if done is None:
        return []
    if done.returncode != 0:
        notes.append(f"dmidecode -t 17 failed (exit status {done.returncode}): {_last_line(done.output)}")
        return []
    modules = parsers.dmidecode_memory(done.output)
    if not modules:
        notes.append(f"dmidecode -t 17 listed no installed memory module ({_last_line(done.output)})")
    return modules


def transport(sys_root: Path, name: str) -> str:
    """How the disk is attached, from where sysfs puts it: nvme, sata, sas, scsi, virtio, usb or unknown."""
    entry = sys_root / "block" / name
    if name.startswith("nvme"):
        return "nvme"
    device = entry / "device"
    driver = os.path.basename(os.path.realpath(device / "driver")) if (device / "driver").exists() else ""
    if driver == "virtio_blk" or name.startswith("vd"):
        return "virtio"
    parts = os.path.realpath(device).split("/")
    if any(part.startswith("usb") for part in parts):
        return "usb"
    if any(re.match(r"^ata\d+$", part) for part in parts):
        return "sata"
    # VPD page 0x89 (ATA information) exists only for an ATA disk behind a SCSI-ATA translation, such as a
    # SATA disk on a SAS HBA.
    if (device / "vpd_pg89").exists():
        return "sata"
    if (device / "sas_address").exists() or any(part.startswith("end_device-") for part in parts):
        return "sas"
    if name.startswith("sd") or (device / "scsi_level").exists():
        return "scsi"
    return "unknown"


def smart(run: Runner, path: str) -> dict:
    try:
        done = run(["smartctl", "--json", "-H", "-i", path], SMART_TIMEOUT_S)
    except TaskFailed as exc:
        return {**NO_SMART, "detail": exc.message}
    return parsers.smart(done.output, done.returncode)


def full_disks(sys_root: Path, run: Runner, notes: list[str]) -> list[dict]:
    found = disks(sys_root)
    for disk in found:
        disk["transport"] = transport(sys_root, disk["name"])
        disk["smart"] = smart(run, disk["path"])
        if disk["smart"]["detail"].startswith("smartctl is not installed"):
            notes.append(f"{disk['smart']['detail']}: SMART health not read")
    return found


def nic_driver(sys_root: Path, name: str) -> str:
    link = sys_root / "class/net" / name / "device/driver"
    return os.path.basename(os.path.realpath(link)) if link.exists() else ""


def nic_firmware(run: Runner, name: str, notes: list[str]) -> str:
    done = _tool(run, ["ethtool", "-i", name], notes, "NIC firmware versions not read")
    if done is None or done.returncode != 0:
        return ""
    return parsers.ethtool_firmware(done.output)


def _pci_names(paths: tuple[Path, ...], wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str] | None:
    """Vendor names (key (vendor, "")) and device names of the ids in `wanted`, from the first pci.ids found."""
    vendors = {vendor for vendor, _ in wanted}
    for path in paths:
        try:
            lines = path.open(encoding="utf-8", errors="replace")
        except OSError:
            continue
        names: dict[tuple[str, str], str] = {}
        with lines:
            vendor = None
            for line in lines:
                if line.startswith("C "):
                    break  # the device classes follow the vendors
                if not line.strip() or line.startswith("#") or line.startswith("\t\t"):
                    continue
                ident, _, name = line.strip().partition("  ")
                if not line.startswith("\t"):
                    vendor = ident.lower() if ident.lower() in vendors else None
                    if vendor:
                        names[(vendor, "")] = name.strip()
                elif vendor and (vendor, ident.lower()) in wanted:
                    names[(vendor, ident.lower())] = name.strip()
        return names
    return None


def pci(sys_root: Path, notes: list[str], ids: tuple[Path, ...] = PCI_IDS) -> list[dict]:
    devices = []
    for entry in sorted((sys_root / "bus/pci/devices").glob("*")):
        driver = entry / "driver"
        devices.append(
            {
                "address": entry.name,
                "class": _read(entry / "class").removeprefix("0x"),
                "vendor_id": _read(entry / "vendor").removeprefix("0x").lower(),
                "device_id": _read(entry / "device").removeprefix("0x").lower(),
                "vendor": "",
                "device": "",
                "driver": os.path.basename(os.path.realpath(driver)) if driver.exists() else "",
            }
        )
    if not devices:
        return devices
    names = _pci_names(ids, {(d["vendor_id"], d["device_id"]) for d in devices})
    if names is None:
        notes.append(f"no pci.ids ({', '.join(str(p) for p in ids)}): PCI vendor and device names left empty")
        return devices
    for device in devices:
        device["vendor"] = names.get((device["vendor_id"], ""), "")
        device["device"] = names.get((device["vendor_id"], device["device_id"]), "")
    return devices


def firmware(sys_root: Path = Path("/sys")) -> dict:
    base = sys_root / "class/dmi/id"
    return {name: _read(base / name) for name in FIRMWARE_FIELDS}


def bmc(run: Runner, notes: list[str], dev_root: Path = Path("/dev"), sys_root: Path = Path("/sys")) -> dict:
    """{"address", "mac", "source"} of the BMC's LAN channel; {} when no BMC answers in-band."""
    try:
        ipmi.load_driver(run, dev_root, sys_root=sys_root)
        _, lan = ipmi.Ipmitool(run).lan()
    except ipmi.NoBmc as exc:
        notes.append(str(exc))
        return {}
    except TaskFailed as exc:
        notes.append(f"{exc.message}: BMC not read")
        return {}
    if not lan["address"]:
        notes.append("the BMC has no IP address on its LAN channel (0.0.0.0)")
    return lan


def _unique(notes: list[str]) -> list[str]:
    return list(dict.fromkeys(notes))


def collect_full(
    sys_root: Path = Path("/sys"),
    proc_root: Path = Path("/proc"),
    *,
    lldp_s: float,
    run: Runner = tools.run,
    listen: Listener = lldp.listen,
    pci_ids: tuple[Path, ...] = PCI_IDS,
    dev_root: Path = Path("/dev"),
) -> dict:
    """The facts of collect() and everything commissioning records besides (see docs/agent-api.md).

    LLDP is listened for on every NIC with link while the tools run, so the wait costs at most `lldp_s`."""
    found = collect(sys_root, proc_root)
    notes: list[str] = []
    linked = [nic["name"] for nic in found["nics"] if nic["link"]]
    heard: dict[str, dict] = {}
    listened = [0.0]

    def listen_lldp() -> None:
        try:
            neighbours, lldp_notes, listened[0] = listen(linked, lldp_s)
        except Exception as exc:  # a bug or an OS refusal must not cost the rest of the facts
            notes.append(f"listening for LLDP failed: {type(exc).__name__}: {exc}")
            return
        heard.update(neighbours)
        notes.extend(lldp_notes)

    listener = threading.Thread(target=listen_lldp, name="lldp", daemon=True)
    if linked and lldp_s > 0:
        listener.start()
    elif not linked:
        notes.append("no NIC has link: LLDP not listened for")
    found["cpu"] = cpu(sys_root, proc_root)
    found["memory_modules"] = memory_modules(run, notes)
    found["disks"] = full_disks(sys_root, run, notes)
    found["pci"] = pci(sys_root, notes, pci_ids)
    found["firmware"] = firmware(sys_root)
    found["bmc"] = bmc(run, notes, dev_root, sys_root)
    for nic in found["nics"]:
        nic["driver"] = nic_driver(sys_root, nic["name"])
        nic["firmware"] = nic_firmware(run, nic["name"], notes)
    if listener.ident is not None:
        listener.join()
    for nic in found["nics"]:
        nic["lldp"] = heard.get(nic["name"])
    found["lldp_listened_s"] = round(listened[0], 1)
    found["notes"] = _unique(notes)
    return found


def _lldp(declared: object) -> dict | None:
    if not isinstance(declared, dict):
        return None
    return {key: str(declared.get(key) or "") for key in LLDP_KEYS}


def sandbox_transport(name: str) -> str:
    for prefix, kind in (("nvme", "nvme"), ("vd", "virtio"), ("sd", "sata")):
        if name.startswith(prefix):
            return kind
    return "unknown"


def collect_full_sandbox(root: Path) -> dict:
    """Full facts of a sandbox machine: what collect_sandbox reports, plus what `DIR/machine.json` declares of
    the rest ("cpu", "memory_modules", "pci", "firmware", "bmc", "notes"; per disk "transport" and "smart", per
    NIC "driver", "firmware" and "lldp"), so the lab can describe a machine completely. Nothing is listened for:
    a NIC's neighbour is what machine.json says."""
    machine = _machine(root)
    found = collect_sandbox(root)
    declared_disks = machine.get("disks", {})
    for disk in found["disks"]:
        declared = declared_disks.get(disk["name"], {})
        disk["transport"] = str(declared.get("transport") or sandbox_transport(disk["name"]))
        smart_declared = declared.get("smart") if isinstance(declared.get("smart"), dict) else {}
        disk["smart"] = {**NO_SMART, "detail": "a sandbox disk image has no SMART", **smart_declared}
    declared_nics = machine.get("nics", [])
    for i, nic in enumerate(found["nics"]):
        declared = declared_nics[i]
        nic["driver"] = str(declared.get("driver", ""))
        nic["firmware"] = str(declared.get("firmware", ""))
        nic["lldp"] = _lldp(declared.get("lldp"))
    threads = found["cpus"]
    found["cpu"] = {"model": "", "sockets": 1, "cores": threads, "threads": threads, "mhz": 0, **machine.get("cpu", {})}
    found["memory_modules"] = list(machine.get("memory_modules", []))
    found["pci"] = list(machine.get("pci", []))
    found["firmware"] = {**{key: "" for key in FIRMWARE_FIELDS}, **machine.get("firmware", {})}
    found["bmc"] = dict(machine.get("bmc", {}))
    # What machine.json declares stands for what was heard: the lab's switches "answer" by declaration, so a NIC
    # without a declared neighbour was listened on and heard none.
    found["lldp_listened_s"] = float(machine.get("lldp_listened_s", 1.0))
    found["notes"] = [str(note) for note in machine.get("notes", [])]
    return found
