"""The facts an unknown machine registers with, bounded before anything is stored.

Discovery takes facts from anyone on the provisioning network, so whatever the agent sends is cut to a size the
database, the Discovered page and a technician can hold: every list at most MAX_ITEMS entries and every object
at most MAX_KEYS keys (more is refused, naming the field: a machine with 300 disks is not one we can show; the PCI
list is bounded by the body's size alone, LIST_LIMITS), every
string at most MAX_TEXT characters (longer ones are cut, not refused: a long PCI description loses nothing that
matters). The body's size, depth, NULs and non-finite numbers were refused by the loader already (core/edge.py).
The fields discovery reads are typed: ``nics[].mac`` (a NIC's MAC), ``dmi``, ``disks[]``, ``bmc.address``.
"""

from __future__ import annotations

from core.edge import Refusal
from provisioner.pxe.mac import MacAddressError, normalise_mac

MAX_ITEMS = 256
# A four-socket server lists several hundred PCI functions (root ports, bridges, system peripherals), which the
# agent trims only past its own size bound: this list is bounded by the body's size rather than a count.
LIST_LIMITS = {"pci": 4096}
MAX_KEYS = 256
MAX_KEY = 128
MAX_TEXT = 1024
# The dicts whose every value is read as a string.
_TEXT_OBJECTS = ("dmi",)


def bounded(value, field: str = "facts") -> dict:
    """A copy of the facts object ``value`` within the bounds, with its known fields checked; Refusal (400)
    naming the field otherwise."""
    if not isinstance(value, dict):
        raise Refusal(field, f"must be an object, not {_kind(value)}")
    facts = _bounded(value, field)
    _check_nics(facts.get("nics"), f"{field}.nics")
    _check_list_of_objects(facts.get("disks"), f"{field}.disks")
    for name in _TEXT_OBJECTS:
        _check_text_object(facts.get(name), f"{field}.{name}")
    _check_bmc(facts.get("bmc"), f"{field}.bmc")
    return facts


def _bounded(value, field: str):
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, list):
        limit = LIST_LIMITS.get(field.partition(".")[2], MAX_ITEMS)
        if len(value) > limit:
            raise Refusal(field, f"has {len(value)} entries; at most {limit} are taken")
        return [_bounded(item, f"{field}.{i}") for i, item in enumerate(value)]
    if isinstance(value, dict):
        if len(value) > MAX_KEYS:
            raise Refusal(field, f"has {len(value)} keys; at most {MAX_KEYS} are taken")
        for key in value:
            if len(key) > MAX_KEY:
                raise Refusal(field, f"has a key longer than {MAX_KEY} characters")
        return {key: _bounded(item, f"{field}.{key}") for key, item in value.items()}
    return value  # numbers, booleans, null


def _check_nics(nics, field: str) -> None:
    _check_list_of_objects(nics, field)
    for i, nic in enumerate(nics or ()):
        if "mac" not in nic:
            raise Refusal(f"{field}.{i}.mac", "is missing")
        try:
            nic["mac"] = normalise_mac(nic["mac"])
        except MacAddressError as exc:
            raise Refusal(f"{field}.{i}.mac", str(exc)) from None


def _check_list_of_objects(value, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise Refusal(field, f"must be a list, not {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise Refusal(f"{field}.{i}", f"must be an object, not {_kind(item)}")


def _check_text_object(value, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise Refusal(field, f"must be an object, not {_kind(value)}")
    for key, item in value.items():
        if item is not None and not isinstance(item, str):
            raise Refusal(f"{field}.{key}", f"must be a string, not {_kind(item)}")


def _check_bmc(value, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise Refusal(field, f"must be an object, not {_kind(value)}")
    address = value.get("address")
    if address is not None and not isinstance(address, str):
        raise Refusal(f"{field}.address", f"must be a string, not {_kind(address)}")


def _kind(value) -> str:
    return {
        list: "a list",
        dict: "an object",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), "a number")


# --- reading them -------------------------------------------------------------------------------------------


def text(facts: dict, *path: str) -> str:
    """The string at ``path`` in the facts, or ""."""
    value = facts
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else ""


def nic_macs(facts: dict) -> list[str]:
    """The MACs of the facts' NICs, in their order, each once."""
    seen = []
    for nic in facts.get("nics") or ():
        if isinstance(nic, dict) and isinstance(nic.get("mac"), str) and nic["mac"] not in seen:
            seen.append(nic["mac"])
    return seen


def summary(facts: dict) -> dict:
    """What the Discovered page, the API and the command line show of a machine's facts: its identity, CPU,
    memory, every disk (with its serial) and every NIC (with its MAC). Whatever the agent left out is empty."""
    cpu = facts.get("cpu") if isinstance(facts.get("cpu"), dict) else {}
    cpus = facts.get("cpus")
    memory = facts.get("memory_bytes")
    return {
        "vendor": text(facts, "dmi", "vendor"),
        "model": text(facts, "dmi", "product"),
        "serial": text(facts, "dmi", "serial"),
        "cpus": cpus if isinstance(cpus, int) and not isinstance(cpus, bool) else None,
        "cpu_model": text(cpu, "model") or text(facts, "cpu_model"),
        "memory_bytes": memory if isinstance(memory, int) and not isinstance(memory, bool) else None,
        "disks": [
            {
                "name": text(disk, "name"),
                "size_bytes": disk["size_bytes"] if isinstance(disk.get("size_bytes"), int) else None,
                "model": text(disk, "model"),
                "serial": text(disk, "serial"),
            }
            for disk in facts.get("disks") or ()
            if isinstance(disk, dict)
        ],
        "nics": [
            {
                "name": text(nic, "name"),
                "mac": text(nic, "mac"),
                "speed_mbps": nic["speed_mbps"] if isinstance(nic.get("speed_mbps"), int) else None,
            }
            for nic in facts.get("nics") or ()
            if isinstance(nic, dict)
        ],
        "bmc_address": text(facts, "bmc", "address"),
    }
