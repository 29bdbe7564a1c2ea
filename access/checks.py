"""What a technician checks on a freshly installed machine, as one shell script and a pure evaluation of
its output. No Django, no network: the unit tests feed it captured output.

One script, one round trip: every fact comes from a single session, so a slow bastion costs one
latency, and the checks see one consistent moment of the machine.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass

_MARK = "@@provisioner-section "


@dataclass(frozen=True)
class Check:
    name: str  # hostname, os_release, nic, root_disk
    ok: bool
    detail: str  # for people: what was expected and what the machine reported


def script(expected: dict) -> str:
    """The POSIX sh script that prints every fact the checks need, each under a marker line."""
    disk = expected.get("root_disk") or ""
    sections = {
        "hostname": "hostname",
        "fqdn": "hostname -f 2>/dev/null",
        "os-release": "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release",
        "ip": "ip -j addr show 2>/dev/null",
        # btrfs reports the subvolume as /dev/sda2[/@]; the device is the part before the bracket.
        "root": "findmnt -n -o SOURCE / 2>/dev/null | sed 's/\\[.*//'",
        # -s walks from the root device down to the disks under it (partition, LVM, md RAID).
        "root-disks": "lsblk -n -s -l -p -o NAME,TYPE \"$(findmnt -n -o SOURCE / | sed 's/\\[.*//')\" 2>/dev/null",
        # The expected disk may be a /dev/disk/by-id link; the machine resolves it to its kernel name.
        "expected-disk": f"readlink -f -- {shlex.quote(disk)} 2>/dev/null" if disk else "true",
    }
    return "\n".join(f"printf '%s\\n' '{_MARK}{name}'; {command}" for name, command in sections.items()) + "\n"


def parse(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith(_MARK):
            current = line[len(_MARK) :].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def _os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            try:
                values[key.strip()] = " ".join(shlex.split(value))
            except ValueError:
                values[key.strip()] = value.strip().strip("\"'")
    return values


def check_hostname(facts: dict, expected: str) -> Check:
    short, fqdn = facts.get("hostname", ""), facts.get("fqdn", "")
    want_short = expected.split(".")[0]
    if "." in expected:
        ok = expected in (short, fqdn)
    else:
        ok = short.split(".")[0] == want_short
    seen = short if not fqdn or fqdn == short else f"{short} (fqdn {fqdn})"
    return Check("hostname", ok, f"expected {expected}, machine says {seen or 'nothing'}")


def check_os(facts: dict, expected: dict) -> Check:
    release = _os_release(facts.get("os-release", ""))
    wrong = [
        f"{key}={release.get(key, '<missing>')!r} (expected to contain {str(want)!r})"
        for key, want in expected.items()
        if str(want) not in release.get(key, "")
    ]
    pretty = release.get("PRETTY_NAME") or " ".join(filter(None, (release.get("ID"), release.get("VERSION_ID"))))
    if wrong:
        return Check("os_release", False, f"{pretty or 'no /etc/os-release'}: " + "; ".join(wrong))
    wanted = ", ".join(f"{k}~{v}" for k, v in expected.items())
    return Check("os_release", True, f"{pretty} ({wanted})")


def check_nic(facts: dict, mac: str, ip: str | None, prefix: int | None) -> Check:
    mac = mac.lower()
    try:
        links = json.loads(facts.get("ip") or "[]")
    except ValueError:
        return Check("nic", False, "`ip -j addr show` printed no JSON (iproute2 too old or missing)")
    link = next((x for x in links if str(x.get("address", "")).lower() == mac), None)
    if link is None:
        return Check("nic", False, f"no interface has MAC {mac}")
    name, flags = link.get("ifname", "?"), set(link.get("flags", []))
    if "UP" not in flags or "LOWER_UP" not in flags:
        state = "administratively down" if "UP" not in flags else "up without carrier"
        return Check("nic", False, f"{name} ({mac}) is {state}")
    if not ip:
        return Check("nic", True, f"{name} ({mac}) is up")
    addresses = [(a.get("local"), a.get("prefixlen")) for a in link.get("addr_info", [])]
    for local, length in addresses:
        if local == ip:
            if prefix is not None and length != prefix:
                return Check("nic", False, f"{name} ({mac}) has {ip}/{length}, expected /{prefix}")
            return Check("nic", True, f"{name} ({mac}) is up with {ip}/{length}")
    seen = ", ".join(f"{a}/{n}" for a, n in addresses) or "no address"
    return Check("nic", False, f"{name} ({mac}) is up but has {seen}, expected {ip}")


def check_root_disk(facts: dict, expected: str) -> Check:
    source = facts.get("root", "")
    disks = [line.split()[0] for line in facts.get("root-disks", "").splitlines() if line.split()[1:2] == ["disk"]]
    if not disks:
        return Check("root_disk", False, f"root filesystem is {source or 'unknown'}, not on a local disk")
    resolved = facts.get("expected-disk") or expected
    names = {posixpath.basename(d) for d in disks}
    ok = resolved in disks or posixpath.basename(resolved) in names
    shown = expected if resolved == expected else f"{expected} ({resolved})"
    return Check("root_disk", ok, f"root filesystem {source} is on {', '.join(disks)}; expected {shown}")


def evaluate(facts: dict, expected: dict) -> list[Check]:
    """The checks for the keys present in ``expected``; an absent key is not checked."""
    checks = []
    if expected.get("hostname"):
        checks.append(check_hostname(facts, expected["hostname"]))
    if expected.get("os"):
        checks.append(check_os(facts, expected["os"]))
    if expected.get("mac"):
        checks.append(check_nic(facts, expected["mac"], expected.get("ip"), expected.get("prefix")))
    if expected.get("root_disk"):
        checks.append(check_root_disk(facts, expected["root_disk"]))
    return checks
