"""What the hardware tools print, read into plain values: dmidecode, smartctl, ethtool, ipmitool, hdparm, nvme.

Pure functions of the text, so each is pinned by a fixture of its tool's real output (tests/unit/agent/fixtures/).
Text tools change their wording between versions; every reader says what it could not find instead of failing.
"""

from __future__ import annotations

import json
import re

# dmidecode's placeholders for a field the firmware left empty; vendors also fill slots with their own.
_DMI_EMPTY = {
    "", "not specified", "unknown", "not provided", "none", "no dimm", "not available", "to be filled by o.e.m.",
    "default string", "[empty]", "undefined", "serialnum", "partnum", "manufacturer",
}  # fmt: skip
_DMI_UNITS = {"bytes": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}


def _dmi_value(value: str) -> str:
    value = value.strip()
    # Empty module slots on some boards report a part number of spaces or a serial of zeros.
    if value.lower() in _DMI_EMPTY or set(value) <= {"0"} or set(value) <= {"F"}:
        return ""
    return value


def _dmi_size(value: str) -> int:
    match = re.match(r"^(\d+)\s*(bytes|kB|MB|GB|TB)$", value.strip(), re.IGNORECASE)
    if match is None:
        return 0
    return int(match.group(1)) * _DMI_UNITS[match.group(2).lower()]


def _dmi_speed(value: str) -> int | None:
    # dmidecode 3.2 and later print MT/s; older ones print the same number as MHz.
    match = re.match(r"^(\d+)\s*(MT/s|MHz)$", value.strip())
    return int(match.group(1)) if match else None


def _dmi_records(text: str, dmi_type: int) -> list[dict[str, str]]:
    """The records of one DMI type: `Key: Value` lines under each `Handle ..., DMI type N` header."""
    records: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        header = re.match(r"^Handle 0x[0-9A-Fa-f]+, DMI type (\d+),", line)
        if header:
            current = {} if int(header.group(1)) == dmi_type else None
            if current is not None:
                records.append(current)
            continue
        if current is None or not line.startswith("\t") or line.startswith("\t\t"):
            continue
        key, sep, value = line.strip().partition(":")
        if sep:
            current[key.strip()] = value.strip()
    return records


def dmidecode_memory(text: str) -> list[dict]:
    """Installed memory modules from `dmidecode -t 17`; empty slots are left out."""
    modules = []
    for record in _dmi_records(text, 17):
        size = _dmi_size(record.get("Size", ""))
        if size == 0:  # "No Module Installed", "Not Installed", or a size the firmware did not fill in
            continue
        slot = _dmi_value(record.get("Locator", ""))
        bank = _dmi_value(record.get("Bank Locator", ""))
        modules.append(
            {
                # Some boards name only the bank ("BANK 0") and use the locator for the channel ("ChannelA-DIMM0").
                "slot": slot or bank,
                "size_bytes": size,
                "speed_mts": _dmi_speed(record.get("Speed", "")),
                "type": _dmi_value(record.get("Type", "")),
                "manufacturer": _dmi_value(record.get("Manufacturer", "")),
                "serial": _dmi_value(record.get("Serial Number", "")),
                "part_number": _dmi_value(record.get("Part Number", "")),
            }
        )
    return modules


def smart(text: str, returncode: int) -> dict:
    """{"available", "passed", "detail"} from `smartctl --json -H -i`.

    smartctl's exit status is a bit mask: bit 3 (8) means the health check says the disk is failing, bits 0-2
    that it could not ask (bad arguments, device not opened, command failed). ATA and SCSI disks say whether
    they support SMART in smart_support; NVMe has no such field, but always answers the health check."""
    try:
        report = json.loads(text)
    except ValueError:
        return {"available": False, "passed": None, "detail": f"smartctl printed no JSON (exit status {returncode})"}
    if not isinstance(report, dict):
        return {"available": False, "passed": None, "detail": "smartctl printed JSON that is not an object"}
    messages = [
        str(m.get("string", "")) for m in (report.get("smartctl") or {}).get("messages", []) if isinstance(m, dict)
    ]
    support = report.get("smart_support")
    status = report.get("smart_status")
    if isinstance(support, dict):
        available = bool(support.get("available")) and support.get("enabled", True) is not False
    else:
        available = isinstance(status, dict)
    if not available:
        why = "; ".join(messages) or "the disk does not support SMART, or it is switched off"
        return {"available": False, "passed": None, "detail": why}
    if not isinstance(status, dict) or "passed" not in status:
        why = "; ".join(messages) or "the health check gave no answer"
        return {"available": True, "passed": None, "detail": why}
    passed = bool(status["passed"]) and not returncode & 8
    detail = "SMART health check passed" if passed else "SMART health check FAILED: the disk reports it is failing"
    return {"available": True, "passed": passed, "detail": detail}


def ethtool_firmware(text: str) -> str:
    """The firmware-version line of `ethtool -i`; "" when the driver reports none (virtio, most VMs)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "firmware-version":
            value = value.strip()
            return "" if value.upper() in ("N/A", "") else value
    return ""


_BMC_SOURCES = {
    "static address": "static",
    "dhcp address": "dhcp",
    "bios assigned address": "bios",
    "other protocol": "other",
    "unspecified": "unspecified",
}


def ipmi_lan(text: str) -> dict:
    """{"address", "mac", "source"} from `ipmitool lan print`; "" for what it did not print.

    `source` is static, dhcp, bios, other or unspecified; an address of 0.0.0.0 (a BMC never configured) is "".
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key and key not in fields:
            fields[key] = value.strip()
    address = fields.get("IP Address", "")
    if not re.match(r"^\d{1,3}(\.\d{1,3}){3}$", address) or address == "0.0.0.0":
        address = ""
    mac = fields.get("MAC Address", "").lower()
    if not re.match(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", mac) or mac == "00:00:00:00:00:00":
        mac = ""
    source = fields.get("IP Address Source", "")
    return {"address": address, "mac": mac, "source": _BMC_SOURCES.get(source.lower(), source.lower())}


# `ipmitool user list`: ID, name (may be empty), then Callin, Link Auth, IPMI Msg and the channel privilege.
_USER_LINE = re.compile(r"^(\d+)\s+(.*?)\s+(true|false)\s+(true|false)\s+(true|false)\s+(.+?)\s*$")


def ipmi_users(text: str) -> list[tuple[int, str, str]]:
    """(user id, name, channel privilege) of every slot `ipmitool user list <channel>` printed."""
    users = []
    for line in text.splitlines():
        match = _USER_LINE.match(line)
        if match:
            users.append((int(match.group(1)), match.group(2).strip(), match.group(6)))
    return users


_SECURITY_WORDS = {
    "supported": "supported",
    "enabled": "enabled",
    "locked": "locked",
    "frozen": "frozen",
    "expired: security count": "expired",
    "supported: enhanced erase": "enhanced",
}


def hdparm_security(text: str) -> dict:
    """The ATA security state from the `Security:` section of `hdparm -I`.

    hdparm prints one line per state bit: a tab and `not` before the word when the bit is clear. The erase time
    estimates (minutes) size the erase's timeout; `more than 508` is taken as 508."""
    state = {key: False for key in _SECURITY_WORDS.values()}
    state.update(present=False, erase_minutes=0, enhanced_minutes=0)
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Security:")
    except StopIteration:
        return state
    state["present"] = True
    for line in lines[start + 1 :]:
        if line and not line.startswith("\t"):
            break  # the next section
        words = line.strip()
        negated = words.startswith("not")
        word = re.sub(r"^(not|\(\?\))\s*", "", words)
        if word in _SECURITY_WORDS:
            state[_SECURITY_WORDS[word]] = not negated and not words.startswith("(?)")
        for minutes, kind in re.findall(r"(\d+)min for (ENHANCED )?SECURITY ERASE UNIT", words):
            state["enhanced_minutes" if kind else "erase_minutes"] = int(minutes)
    return state


def nvme_can_format(text: str) -> bool:
    """From `nvme id-ctrl -o json`: the controller supports the Format NVM command (OACS bit 1), whose secure
    erase setting 1 is the user data erase."""
    try:
        ctrl = json.loads(text)
        return bool(int(ctrl.get("oacs", 0)) & 0x2)
    except (ValueError, TypeError, AttributeError):
        return False


def nvme_lba_format(text: str) -> int | None:
    """The LBA format in use, from `nvme id-ns -o json`: FLBAS bits 0-3, and bits 5-6 as bits 4-5 of the index
    (NVMe 2.0, more than 16 formats)."""
    try:
        ns = json.loads(text)
        flbas = int(ns["flbas"])
    except (ValueError, KeyError, TypeError):
        return None
    return (flbas & 0xF) | ((flbas >> 5) & 0x3) << 4
