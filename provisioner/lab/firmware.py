"""What a PXE ROM and its boot loader do with a site's TFTP root, as pure functions the lab machine calls.

pxelinux (BIOS) asks for `pxelinux.cfg/<uuid>`, then `pxelinux.cfg/01-<mac>`, then its IP address in hex
shortened one digit at a time, then `pxelinux.cfg/default`, all in lower case. A GRUB netboot image built with
grub-mkimage (UEFI) asks for `grub/grub.cfg-01-<mac>`, the hex IP forms, then `grub/grub.cfg`. The first file
found is the config; its default entry is what boots: a local boot, or a kernel with a command line.
"""

from __future__ import annotations

import enum
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.pxe.mac import hyphenated, normalise_mac


class Firmware(enum.StrEnum):
    BIOS = "bios"  # legacy PXE ROM chain-loading pxelinux.0
    UEFI = "uefi"  # UEFI PXE chain-loading GRUB's netboot image


class BootKind(enum.StrEnum):
    LOCAL = "local"  # the loader hands back to the firmware's next boot option: the disk
    AGENT = "agent"  # the memory OS: provisioner.url= / provisioner.token= on the command line
    DISCOVER = "discover"  # the memory OS in discovery mode: provisioner.mode=discover, provisioner.url=, no token
    PRESEED = "preseed"  # debian-installer with url=
    KICKSTART = "kickstart"  # anaconda with inst.ks= (or ks= on CentOS 7)
    AUTOINSTALL = "autoinstall"  # subiquity with ds=nocloud-net;s=
    UNKNOWN = "unknown"  # a kernel this lab cannot play the part of


@dataclass(frozen=True)
class LoadedConfig:
    """The config file the loader settled on, and every name it asked the TFTP server for on the way."""

    path: str | None  # relative to the TFTP root; None when nothing was found
    text: str
    asked: tuple[str, ...]


@dataclass(frozen=True)
class BootTarget:
    kind: BootKind
    kernel: str = ""
    initrd: str = ""
    cmdline: str = ""
    args: dict[str, str] = field(default_factory=dict)

    @property
    def answer_url(self) -> str:
        """The URL the installer fetches its answers from (for autoinstall: the seed directory)."""
        if self.kind is BootKind.PRESEED:
            return self.args.get("url") or self.args.get("preseed/url", "")
        if self.kind is BootKind.KICKSTART:
            return self.args.get("inst.ks") or self.args.get("ks", "")
        if self.kind is BootKind.AUTOINSTALL:
            return nocloud_seed(self.args.get("ds", ""))
        return ""


def candidate_names(firmware: Firmware | str, mac: str, *, uuid: str = "", ip: str = "") -> list[str]:
    """The file names the loader asks for, in order."""
    firmware = Firmware(firmware)
    hexip = "".join(f"{int(octet):02X}" for octet in ip.split(".")) if ip else ""
    shortened = [hexip[:n] for n in range(len(hexip), 0, -1)]
    if firmware is Firmware.BIOS:
        names = [f"pxelinux.cfg/{uuid.lower()}"] if uuid else []
        names.append(f"pxelinux.cfg/01-{hyphenated(mac)}")
        names += [f"pxelinux.cfg/{h}" for h in shortened]
        names.append("pxelinux.cfg/default")
        return names
    return [f"grub/grub.cfg-01-{hyphenated(mac)}", *[f"grub/grub.cfg-{h}" for h in shortened], "grub/grub.cfg"]


def load_config(
    tftp_root: str | Path, firmware: Firmware | str, mac: str, *, uuid: str = "", ip: str = ""
) -> LoadedConfig:
    root = Path(tftp_root)
    asked = []
    for name in candidate_names(firmware, mac, uuid=uuid, ip=ip):
        asked.append(name)
        try:
            # TFTP has no directories of its own: a name that climbs out of the root is refused by tftpd.
            path = (root / name).resolve()
            if root.resolve() not in path.parents:
                continue
            return LoadedConfig(name, path.read_text(errors="replace"), tuple(asked))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
    return LoadedConfig(None, "", tuple(asked))


# -- pxelinux ---------------------------------------------------------------------------------------------------


def parse_pxelinux(text: str, mac: str) -> BootTarget:
    """The default LABEL of a pxelinux config, with BOOTIF appended as `IPAPPEND 2` asks."""
    default = ""
    labels: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "LABEL":
            current = labels.setdefault(rest, {})
        elif keyword == "DEFAULT" and current is None:
            default = rest.split()[0] if rest else ""
        elif current is not None:
            current[keyword] = rest
    entry = labels.get(default) or (next(iter(labels.values())) if labels else None)
    if entry is None or "LOCALBOOT" in entry or not entry.get("KERNEL", entry.get("LINUX")):
        return BootTarget(BootKind.LOCAL)
    cmdline = entry.get("APPEND", "")
    initrd = entry.get("INITRD", "")
    if not initrd:
        initrd = parse_cmdline(cmdline).get("initrd", "")
    if entry.get("IPAPPEND", "0").strip() in ("2", "3"):
        cmdline = f"{cmdline} BOOTIF=01-{hyphenated(mac)}".strip()
    return classify(entry.get("KERNEL") or entry.get("LINUX", ""), initrd, cmdline)


# -- GRUB -------------------------------------------------------------------------------------------------------

_MENUENTRY = re.compile(r"^\s*menuentry\s+.*\{\s*$")


def _grub_menuentries(text: str) -> list[list[list[str]]]:
    entries: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if current is None and _MENUENTRY.match(line):
            current = []
            continue
        if current is not None:
            if line == "}":
                entries.append(current)
                current = None
                continue
            try:
                current.append(shlex.split(line))
            except ValueError:
                current.append(line.split())
    return entries


def _grub_default(text: str) -> int:
    match = re.search(r"^\s*set\s+default=['\"]?(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _grub_variables(text: str, mac: str) -> dict[str, str]:
    """What the `regexp --set=N:name ... "$net_default_mac"` of provisioner's grub.cfg sets: the booting NIC's MAC
    octets, which its discovery entry spells BOOTIF with."""
    octets = normalise_mac(mac).split(":")
    names = re.findall(r"--set=(\d):(\w+)", text) if "$net_default_mac" in text else []
    return {name: octets[int(n) - 1] for n, name in names if 1 <= int(n) <= 6}


def _expand(word: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), ""), word)


def parse_grub(text: str, mac: str) -> BootTarget:
    """The default menuentry of a GRUB config. GRUB adds no BOOTIF itself: whatever the file says is the line
    (with the variables provisioner's default sets from the booting NIC's MAC expanded, as GRUB does)."""
    entries = _grub_menuentries(text)
    index = _grub_default(text)
    if not entries or index >= len(entries):
        return BootTarget(BootKind.LOCAL)
    kernel = initrd = ""
    args: list[str] = []
    for words in entries[index]:
        if words and words[0] in ("linux", "linuxefi"):
            kernel, args = (words[1] if len(words) > 1 else ""), words[2:]
        elif words and words[0] in ("initrd", "initrdefi"):
            initrd = words[1] if len(words) > 1 else ""
    if not kernel:
        return BootTarget(BootKind.LOCAL)  # `exit 1`, chainloader of the disk, or nothing: the next boot option
    variables = _grub_variables(text, mac)
    return classify(kernel, initrd, " ".join(_expand(word, variables) for word in args))


def parse_config(firmware: Firmware | str, text: str, mac: str) -> BootTarget:
    return parse_pxelinux(text, mac) if Firmware(firmware) is Firmware.BIOS else parse_grub(text, mac)


def resolve(
    tftp_root: str | Path, firmware: Firmware | str, mac: str, *, uuid: str = "", ip: str = ""
) -> tuple[LoadedConfig, BootTarget]:
    """What a machine with this NIC and firmware boots from the TFTP root."""
    mac = normalise_mac(mac)
    loaded = load_config(tftp_root, firmware, mac, uuid=uuid, ip=ip)
    if loaded.path is None:
        # No config at all: the loader gives up and the firmware moves on to the disk.
        return loaded, BootTarget(BootKind.LOCAL)
    return loaded, parse_config(firmware, loaded.text, mac)


# -- the kernel command line ------------------------------------------------------------------------------------


def parse_cmdline(cmdline: str) -> dict[str, str]:
    """`key=value` words of a kernel command line (the kernel allows double quotes); bare words map to ""."""
    try:
        words = shlex.split(cmdline)
    except ValueError:
        words = cmdline.split()
    out: dict[str, str] = {}
    for word in words:
        key, _, value = word.partition("=")
        out.setdefault(key, value)
    return out


def nocloud_seed(ds: str) -> str:
    """The seed URL of a `ds=nocloud-net;s=<url>` (or `nocloud;s=`, `seedfrom=`) datasource argument."""
    name, _, rest = ds.partition(";")
    if name not in ("nocloud", "nocloud-net"):
        return ""
    for part in rest.split(";"):
        key, _, value = part.partition("=")
        if key in ("s", "seedfrom") and value.startswith(("http://", "https://")):
            return value
    return ""


def classify(kernel: str, initrd: str, cmdline: str) -> BootTarget:
    args = parse_cmdline(cmdline)
    if args.get("provisioner.url") and args.get("provisioner.mode") == "discover":
        kind = BootKind.DISCOVER
    elif args.get("provisioner.url"):
        kind = BootKind.AGENT
    elif nocloud_seed(args.get("ds", "")):
        kind = BootKind.AUTOINSTALL
    elif args.get("inst.ks") or args.get("ks"):
        kind = BootKind.KICKSTART
    elif (args.get("url") or args.get("preseed/url", "")).startswith(("http://", "https://")):
        kind = BootKind.PRESEED
    else:
        kind = BootKind.UNKNOWN
    return BootTarget(kind, kernel, initrd, cmdline, args)


_SECRET_ARGS = ("provisioner.token",)
_TOKEN_IN_PATH = re.compile(r"(/i/)[A-Za-z0-9_-]{16,128}(/)")


def mask_cmdline(cmdline: str) -> str:
    """The command line with the install token hidden, for logs: as a value and inside /i/<token>/ URLs."""
    words = []
    for word in cmdline.split():
        key, sep, value = word.partition("=")
        if sep and key in _SECRET_ARGS:
            word = f"{key}=***"
        words.append(_TOKEN_IN_PATH.sub(r"\1***\2", word))
    return " ".join(words)
