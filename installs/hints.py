"""Disk hints: choosing disks by what they are, as Ironic's root device hints do, resolved against the
facts the agent registered with.

A hint is a mapping of any of: ``name`` (a glob on the kernel name, "sd*", or a /dev path), ``size``
("500GiB", ">=100GB", "<2TiB"), ``model`` (case-insensitive substring), ``vendor`` (same), ``serial``
and ``wwn`` (exact), ``rotational`` (bool), ``all`` (true: every disk) and ``count`` (take that many of
the matches, smallest first, then by name). A disk matches when it meets every key. A hint that matches
nothing fails with the machine's disks listed, so the technician sees what there is to choose from.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

HINT_KEYS = ("name", "size", "model", "vendor", "serial", "wwn", "rotational", "all", "count")

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(>=|<=|==|>|<)?\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_OPS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    # "==" and a bare size: within 1% (disks are sold in decimal and reported in binary units)
    "==": lambda a, b: abs(a - b) <= b * 0.01,
}


class HintError(ValueError):
    """The hint is malformed, or no disk of the machine matches it. The message says which and lists the disks."""


def parse_size(text: str | int) -> tuple[str, int]:
    """A size as a hint gives it: ">=100GiB" -> (">=", 107374182400). A bare number is bytes."""
    if isinstance(text, bool):
        raise HintError(f"size: {text!r} is not a size")
    if isinstance(text, int):
        return "==", text
    match = _SIZE.match(str(text))
    if not match or match.group(3).lower() not in _UNITS:
        raise HintError(f"size: {text!r} is not a size such as 500GiB, >=100GB or <2TiB")
    op, number, unit = match.groups()
    return op or "==", int(float(number) * _UNITS[unit.lower()])


def check(hint: Any, where: str = "hint") -> None:
    """Raise HintError when ``hint`` is not a well-formed hint; say which key and why."""
    if not isinstance(hint, dict) or not hint:
        raise HintError(f"{where}: a disk hint is a mapping such as {{rotational: false, count: 2}}")
    unknown = sorted(set(hint) - set(HINT_KEYS))
    if unknown:
        raise HintError(f"{where}: unknown key {unknown[0]!r}; a hint has {', '.join(HINT_KEYS)}")
    for key in ("name", "model", "vendor", "serial", "wwn"):
        if key in hint and (not isinstance(hint[key], str) or not hint[key]):
            raise HintError(f"{where}.{key}: a non-empty string is required")
    if "size" in hint:
        try:
            parse_size(hint["size"])
        except HintError as exc:
            raise HintError(f"{where}.{exc}") from None
    for key in ("rotational", "all"):
        if key in hint and not isinstance(hint[key], bool):
            raise HintError(f"{where}.{key}: true or false")
    if "count" in hint and (isinstance(hint["count"], bool) or not isinstance(hint["count"], int) or hint["count"] < 1):
        raise HintError(f"{where}.count: a whole number of at least 1")


def _name(disk: dict) -> str:
    return disk.get("name") or str(disk.get("path", "")).removeprefix("/dev/")


def _matches(disk: dict, hint: dict) -> bool:
    if "name" in hint:
        pattern = hint["name"]
        subject = disk.get("path", "") if pattern.startswith("/") else _name(disk)
        if not fnmatch.fnmatchcase(subject, pattern):
            return False
    if "size" in hint:
        op, size = parse_size(hint["size"])
        if not _OPS[op](int(disk.get("size_bytes") or 0), size):
            return False
    for key in ("model", "vendor"):
        if key in hint and hint[key].lower() not in str(disk.get(key) or "").lower():
            return False
    for key in ("serial", "wwn"):
        if key in hint and hint[key] != str(disk.get(key) or ""):
            return False
    return not ("rotational" in hint and disk.get("rotational") is not hint["rotational"])


def describe(disks: list[dict]) -> str:
    """The machine's disks, one phrase each, for a message."""
    if not disks:
        return "the machine reported no disks"
    parts = []
    for disk in disks:
        size = int(disk.get("size_bytes") or 0)
        bits = [f"{size / 2**30:.0f} GiB" if size else "size unknown"]
        if disk.get("model"):
            bits.append(str(disk["model"]))
        if disk.get("serial"):
            bits.append(f"serial {disk['serial']}")
        if disk.get("wwn"):
            bits.append(f"wwn {disk['wwn']}")
        if disk.get("rotational") is not None:
            bits.append("rotational" if disk["rotational"] else "solid-state")
        parts.append(f"{disk.get('path') or _name(disk)} ({', '.join(bits)})")
    return "; ".join(parts)


def resolve(hint: dict, disks: list[dict], *, where: str = "hint") -> list[str]:
    """The /dev paths of the disks ``hint`` chooses, in a stable order: by size, then name."""
    check(hint, where)
    usable = [d for d in disks if d.get("path")]
    if hint.get("all") and set(hint) <= {"all", "count"}:
        chosen = usable
    else:
        chosen = [d for d in usable if _matches(d, hint)]
    chosen.sort(key=lambda d: (int(d.get("size_bytes") or 0), _name(d)))
    count = hint.get("count")
    if not chosen or (count and len(chosen) < count):
        found = f"only {len(chosen)} of the {count} disks wanted match" if chosen else "no disk matches"
        raise HintError(f"{where}: {found} {_show(hint)}; the machine has: {describe(disks)}")
    if count:
        chosen = chosen[:count]
    elif not hint.get("all"):
        chosen = chosen[:1]
    return [d["path"] for d in chosen]


def _show(hint: dict) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in hint.items()) + "}"


def literal_paths(hint: dict) -> list[str] | None:
    """A hint that names one disk by path needs no facts: that path. Else None."""
    name = hint.get("name", "")
    if set(hint) == {"name"} and name.startswith("/dev/") and not any(c in name for c in "*?["):
        return [name]
    return None
