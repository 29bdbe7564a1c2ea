"""A machine's hardware as people read it: the facts of a commissioning as tables, what changed between two
versions, and the one-line summary the machine list, the API and ``manage.py machines`` show.

Facts come from an agent in the machine (any version of it, on any hardware): a key may be missing, null or of
another type than expected. Everything here reads them defensively (a list of objects, or nothing; a number, or
nothing), so that no fact a machine reports can break a page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from inventory.models import Machine

# Bounds on what a page renders of one facts document (a machine with 4,000 PCI functions is a report's bug).
ROWS_MAX = 1000
# The changes each version lists on the machine's hardware page; its own page lists all of them.
CHANGES_SHOWN = 20
VALUE_MAX = 200
CPU_LABELS = (
    ("model", "CPU model"),
    ("sockets", "Sockets"),
    ("cores", "Cores"),
    ("threads", "Threads"),
    ("mhz", "Clock (MHz)"),
)
BMC_LABELS = (("address", "BMC address"), ("mac", "BMC MAC"), ("source", "BMC seen through"))
FIRMWARE_LABELS = (
    ("bios_vendor", "BIOS vendor"),
    ("bios_version", "BIOS version"),
    ("bios_date", "BIOS date"),
    ("board_vendor", "Board vendor"),
    ("board_name", "Board"),
    ("board_serial", "Board serial"),
    ("chassis_serial", "Chassis serial"),
)
PCI_KEYS = ("address", "class", "vendor_id", "device_id", "vendor", "device", "driver")


def _obj(value) -> dict:
    return value if isinstance(value, dict) else {}


def _rows(value) -> list[dict]:
    return [item for item in value[:ROWS_MAX] if isinstance(item, dict)] if isinstance(value, list) else []


def _text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        return str(value)[:VALUE_MAX]
    return ""


def _number(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value >= 0 else None


def _flag(value) -> bool | None:
    return value if isinstance(value, bool) else None


def short_json(value) -> str:
    """One value of a change, as compact JSON cut to a readable length."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 1] + "…"


def disk_kind(disk: dict) -> str:
    if str(disk.get("transport") or "").lower() == "nvme" or str(disk.get("name") or "").startswith("nvme"):
        return "NVMe"
    rotational = _flag(disk.get("rotational"))
    return "" if rotational is None else "HDD" if rotational else "SSD"


def smart(value) -> tuple[str, str]:
    """(what SMART says, its CSS state): passed, FAILED, or not available."""
    value = _obj(value)
    if not value or value.get("available") is False:
        return "not available", "muted"
    passed = _flag(value.get("passed"))
    if passed is None:
        return "no verdict", "muted"
    return ("passed", "s-succeeded") if passed else ("FAILED", "s-failed")


def lldp(nic: dict, listened: bool | None = None) -> tuple[str, str]:
    """(switch and port as LLDP told them, or why there is none; CSS state). ``listened``: whether the agent
    listened at all (its ``lldp_listened_s``); None when it did not say (an older agent), then a NIC with no
    ``lldp`` key was not listened on."""
    neighbour = _obj(nic.get("lldp"))
    if not neighbour:
        heard_nothing = listened if listened is not None else "lldp" in nic
        return ("no LLDP neighbour heard", "muted") if heard_nothing else ("not listened", "muted")
    switch = _text(neighbour.get("system_name")) or _text(neighbour.get("chassis_id"))
    port = _text(neighbour.get("port_id"))
    description = _text(neighbour.get("port_description"))
    where = f"{switch} port {port}" if port else switch
    return (f"{where} ({description})" if description and description != port else where), ""


@dataclass
class Tables:
    """The facts of one version as the hardware page shows them."""

    system: list[tuple[str, str]] = field(default_factory=list)
    cpu: list[tuple[str, str]] = field(default_factory=list)
    memory: str = ""
    memory_modules: list[dict] = field(default_factory=list)
    disks: list[dict] = field(default_factory=list)
    nics: list[dict] = field(default_factory=list)
    pci: list[dict] = field(default_factory=list)
    firmware: list[tuple[str, str]] = field(default_factory=list)
    bmc: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(
            (self.system, self.cpu, self.memory, self.memory_modules, self.disks, self.nics, self.pci,
             self.firmware, self.bmc, self.notes)
        )  # fmt: skip


def _pairs(source: dict, labels: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return [(label, text) for key, label in labels if (text := _text(source.get(key)))]


def tables(facts) -> Tables:
    facts = _obj(facts)
    cpu = _obj(facts.get("cpu"))
    system = _pairs(_obj(facts.get("dmi")), (("vendor", "Vendor"), ("product", "Product"), ("serial", "Serial")))
    if isinstance(facts.get("efi"), bool):
        system.append(("Boots", "UEFI" if facts["efi"] else "legacy BIOS"))
    cpu_rows = _pairs(cpu, CPU_LABELS)
    if not cpu_rows and _number(facts.get("cpus")) is not None:
        cpu_rows = [("Logical CPUs", str(_number(facts.get("cpus"))))]
    return Tables(
        system=system,
        cpu=cpu_rows,
        memory=gib(_number(facts.get("memory_bytes"))),
        memory_modules=[
            {
                "slot": _text(m.get("slot")),
                "size": gib(_number(m.get("size_bytes"))),
                "speed_mts": _number(m.get("speed_mts")),
                "type": _text(m.get("type")),
                "manufacturer": _text(m.get("manufacturer")),
                "serial": _text(m.get("serial")),
                "part_number": _text(m.get("part_number")),
            }
            for m in _rows(facts.get("memory_modules"))
        ],
        disks=[_disk(d) for d in _rows(facts.get("disks"))],
        nics=[_nic(n, _listened(facts)) for n in _rows(facts.get("nics"))],
        pci=[{key: _text(p.get(key)) for key in PCI_KEYS} for p in _rows(facts.get("pci"))],
        firmware=_pairs(_obj(facts.get("firmware")), FIRMWARE_LABELS),
        bmc=_pairs(_obj(facts.get("bmc")), BMC_LABELS),
        notes=[_text(n) for n in facts.get("notes", [])[:ROWS_MAX] if _text(n)]
        if isinstance(facts.get("notes"), list)
        else [],
    )


def _disk(d: dict) -> dict:
    verdict, verdict_class = smart(d.get("smart"))
    return {
        "name": _text(d.get("name")),
        "path": _text(d.get("path")),
        "size": disk_size(_number(d.get("size_bytes"))),
        "model": _text(d.get("model")),
        "serial": _text(d.get("serial")),
        "wwn": _text(d.get("wwn")),
        "kind": disk_kind(d),
        "transport": _text(d.get("transport")),
        "smart": verdict,
        "smart_class": verdict_class,
        "smart_detail": _text(_obj(d.get("smart")).get("detail")),
    }


def _listened(facts: dict) -> bool | None:
    seconds = facts.get("lldp_listened_s")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    return seconds > 0


def _nic(n: dict, listened: bool | None) -> dict:
    switch, switch_class = lldp(n, listened)
    return {
        "name": _text(n.get("name")),
        "mac": _text(n.get("mac")),
        "link": _flag(n.get("link")),
        "speed_mbps": _number(n.get("speed_mbps")),
        "driver": _text(n.get("driver")),
        "firmware": _text(n.get("firmware")),
        "switch": switch,
        "switch_class": switch_class,
    }


def changes(value, limit: int | None = None) -> tuple[list[dict], int]:
    """A version's changes as rows (path, before, after) and how many it has in all."""
    rows = [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []
    shown = rows if limit is None else rows[:limit]
    return [
        {"path": _text(c.get("path")), "before": short_json(c.get("before")), "after": short_json(c.get("after"))}
        for c in shown
    ], len(rows)


# --- the summary columns ----------------------------------------------------------------------


def summary(machine: Machine) -> dict:
    """What commissioning recorded in the machine's columns (None: not known)."""
    return {
        "commissioned_at": machine.commissioned_at,
        "cpu_model": machine.cpu_model,
        "cpu_cores": machine.cpu_cores,
        "memory_bytes": machine.memory_bytes,
        "disk_count": machine.disk_count,
        "ssd_count": machine.ssd_count,
        "hdd_count": machine.hdd_count,
        "nvme_count": machine.nvme_count,
        "nic_max_speed_mbps": machine.nic_max_speed_mbps,
    }


def gib(size: int | None) -> str:
    if size is None:
        return ""
    value = size / 2**30
    return f"{value:.0f} GiB" if value >= 10 or value == int(value) else f"{value:.1f} GiB"


def disk_size(size: int | None) -> str:
    """Decimal, as disks are sold and their labels read: a 3.84 TB NVMe is 3.84 TB, not 3.5."""
    if size is None:
        return ""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def speed(mbps: int | None) -> str:
    if not mbps:
        return ""
    return f"{mbps // 1000} Gb/s" if mbps >= 1000 and mbps % 1000 == 0 else f"{mbps} Mb/s"


def summary_line(machine: Machine) -> str:
    """One line for a list: cores, memory, disks by kind, the fastest NIC; empty when never commissioned."""
    parts = []
    if machine.cpu_cores:
        parts.append(f"{machine.cpu_cores} cores")
    if machine.memory_bytes:
        parts.append(gib(machine.memory_bytes))
    if machine.disk_count is not None:
        kinds = [
            f"{n} {label}"
            for n, label in ((machine.nvme_count, "NVMe"), (machine.ssd_count, "SSD"), (machine.hdd_count, "HDD"))
            if n
        ]
        disks = f"{machine.disk_count} disk{'s' if machine.disk_count != 1 else ''}"
        parts.append(f"{disks} ({', '.join(kinds)})" if kinds else disks)
    if machine.nic_max_speed_mbps:
        parts.append(speed(machine.nic_max_speed_mbps))
    return " · ".join(parts)
