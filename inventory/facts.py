"""A machine's hardware facts as commissioning reports them: stored as versions (MachineFacts), what changed
since the previous version, and the columns the machine list and the API filter on (memory, CPU, disks, NIC
speed, the switch port each NIC is cabled to). ``store_version`` is the one writer."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from audit.service import Actor, record

from .models import Machine, MachineFacts

# What the diff compares: a list of entries is matched by its key, so a disk moved to another slot is not
# reported as two changes.
_KEYED_LISTS = {"disks": "serial", "nics": "mac", "memory_modules": "slot", "pci": "address"}
# Noise that changes at every boot.
_IGNORED = {"lldp_listened_s", "notes"}
MAX_CHANGES = 200


def _text(value: Any, limit: int) -> str:
    return str(value or "")[:limit]


def disk_kind(disk: dict) -> str:
    """nvme, ssd or hdd."""
    if disk.get("transport") == "nvme" or str(disk.get("name", "")).startswith("nvme"):
        return "nvme"
    return "hdd" if disk.get("rotational") else "ssd"


def summary(facts: dict) -> dict:
    """The Machine columns the facts fill."""
    cpu = facts.get("cpu") or {}
    disks = [d for d in facts.get("disks") or [] if isinstance(d, dict)]
    kinds = [disk_kind(d) for d in disks]
    speeds = [n.get("speed_mbps") for n in facts.get("nics") or [] if isinstance(n, dict)]
    speeds = [s for s in speeds if isinstance(s, int) and s > 0]
    cores = cpu.get("cores") if isinstance(cpu.get("cores"), int) else facts.get("cpus")
    # The installed memory: the modules' sizes when they are known (the kernel's MemTotal is a few per cent less,
    # so a 64 GiB machine would fail a "64 GiB at least" filter).
    modules = [m.get("size_bytes") for m in facts.get("memory_modules") or [] if isinstance(m, dict)]
    installed = sum(size for size in modules if isinstance(size, int) and size > 0)
    memory = installed or facts.get("memory_bytes")
    return {
        "cpu_model": _text(cpu.get("model"), 200),
        "cpu_cores": cores if isinstance(cores, int) and cores >= 0 else None,
        "memory_bytes": memory if isinstance(memory, int) and memory >= 0 else None,
        "disk_count": len(disks),
        "ssd_count": kinds.count("ssd"),
        "hdd_count": kinds.count("hdd"),
        "nvme_count": kinds.count("nvme"),
        "nic_max_speed_mbps": max(speeds) if speeds else None,
    }


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if path or key not in _IGNORED:
                _flatten(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        key = _KEYED_LISTS.get(path.rsplit(".", 1)[-1])
        for index, item in enumerate(value):
            label = item.get(key) if key and isinstance(item, dict) and item.get(key) else index
            _flatten(item, f"{path}[{label}]", out)
        if not value:
            out[path] = []
    else:
        out[path] = value


def diff(before: dict, after: dict) -> list[dict]:
    """What changed, as [{"path", "before", "after"}] (None on the side where a value is missing)."""
    old, new = {}, {}
    _flatten(before or {}, "", old)
    _flatten(after or {}, "", new)
    changes = [
        {"path": path, "before": old.get(path), "after": new.get(path)}
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    ]
    return changes[:MAX_CHANGES]


def _update_nics(machine: Machine, facts: dict) -> None:
    reported = {str(n.get("mac", "")).lower(): n for n in facts.get("nics") or [] if isinstance(n, dict)}
    listened = isinstance(facts.get("lldp_listened_s"), int | float) and facts["lldp_listened_s"] > 0
    for nic in machine.nics.all():
        seen = reported.get(nic.mac)
        if seen is None:
            continue
        lldp = seen.get("lldp") if isinstance(seen.get("lldp"), dict) else None
        speed = seen.get("speed_mbps")
        nic.driver = _text(seen.get("driver"), 64)
        nic.firmware = _text(seen.get("firmware"), 100)
        nic.speed_mbps = speed if isinstance(speed, int) and speed > 0 else None
        nic.link = seen.get("link") if isinstance(seen.get("link"), bool) else None
        nic.switch_name = _text((lldp or {}).get("system_name"), 255)
        nic.switch_chassis = _text((lldp or {}).get("chassis_id"), 255)
        nic.switch_port = _text((lldp or {}).get("port_id") or (lldp or {}).get("port_description"), 255)
        nic.lldp_seen = True if lldp else (False if listened else None)
        nic.save(
            update_fields=["driver", "firmware", "speed_mbps", "link", "switch_name", "switch_chassis", "switch_port",
                           "lldp_seen"]
        )  # fmt: skip


def store_version(machine: Machine, facts: dict, source: str, actor: Actor) -> MachineFacts:
    """Keep ``facts`` as the machine's next version, with what changed since the last; fill the machine's
    hardware columns, its NICs' driver, speed and switch port, and its serial, vendor and model. Call inside
    the transaction of the report, the machine locked."""
    previous = machine.fact_versions.order_by("-version").first()
    version = MachineFacts.objects.create(
        machine=machine,
        version=previous.version + 1 if previous else 1,
        source=source[:100],
        facts=facts,
        changes=diff(previous.facts, facts) if previous else [],
    )
    dmi = facts.get("dmi") or {}
    fields = summary(facts)
    identity = {
        "serial": _text(dmi.get("serial"), 100),
        "vendor": _text(dmi.get("vendor"), 100),
        "model": _text(dmi.get("product"), 100),
    }
    # What the hardware says wins over what was typed; an empty DMI field keeps the typed value.
    fields.update({k: v for k, v in identity.items() if v})
    for key, value in fields.items():
        setattr(machine, key, value)
    machine.facts = facts
    machine.commissioned_at = timezone.now()
    machine.save(update_fields=[*fields, "facts", "commissioned_at"])
    _update_nics(machine, facts)
    record(
        actor,
        "machine.facts",
        machine,
        {"version": version.version, "source": source, "changes": len(version.changes)},
    )
    return version
