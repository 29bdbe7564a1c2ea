"""Boot-loader configs: one install entry per MAC, and defaults that boot the local disk, or, at a site that
discovers unknown machines, the memory OS in discovery mode (with a local-boot file per known MAC).

Everything here is a pure function of its arguments, so golden files can pin the output byte for byte.
"""

import re
from dataclasses import dataclass
from enum import StrEnum

from provisioner.pxe.mac import hyphenated, normalise_mac


class Loader(StrEnum):
    PXELINUX = "pxelinux"  # BIOS PXE: syslinux's pxelinux.0 fetching pxelinux.cfg/ over TFTP
    GRUB = "grub"  # UEFI PXE: GRUB's netboot image fetching grub/ over TFTP
    IPXE = "ipxe"  # iPXE: a script the control plane serves over HTTP


# File names relative to the TFTP root. pxelinux asks for 01-<mac> in lower case only and ignores an
# upper-case file, so the MAC is always normalised first.
PXELINUX_DIR = "pxelinux.cfg"
GRUB_DIR = "grub"
PXELINUX_DEFAULT = f"{PXELINUX_DIR}/default"
GRUB_DEFAULT = f"{GRUB_DIR}/grub.cfg"

HEADER = "provisioner"
# The first comment of every config that discovers, and what tells a discovering default from the local-disk one.
DISCOVERY_NOTE = (
    "machines unknown to inventory boot the memory OS and register (discovery); known ones have a per-MAC file"
)
# x86 Linux keeps the first 2048 bytes of its command line and drops the rest without a word; BOOTIF goes
# last, so an over-long line would silently lose the NIC selection. The margin leaves room for BOOTIF/initrd=.
MAX_CMDLINE = 1900
_FORBIDDEN_IN_CMDLINE = re.compile(r"[\x00-\x1f\x7f]")
# Left unquoted in GRUB; anything else (';', '$', quotes, braces, spaces) is single-quoted.
_GRUB_BARE = re.compile(r"[A-Za-z0-9_./:=,+@%-]+")


@dataclass(frozen=True)
class BootEntry:
    """What one machine boots next: a kernel, its initrd and command line, for one loader.

    `kernel` and `initrd` are paths from the TFTP root (pxelinux, GRUB) or URLs (iPXE). `cmdline` must not
    carry BOOTIF: each loader adds it in its own way, so the installer picks the NIC by MAC.
    """

    mac: str
    kernel: str
    initrd: str
    cmdline: str
    loader: Loader = Loader.PXELINUX

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", normalise_mac(self.mac))
        object.__setattr__(self, "loader", Loader(self.loader))
        _check_boot(self.kernel, self.initrd, self.cmdline)


def _check_boot(kernel: str, initrd: str, cmdline: str) -> None:
    """ValueError for a kernel, initrd or command line that would break the config it is written into."""
    for field, value in (("kernel", kernel), ("initrd", initrd)):
        if not value or any(c.isspace() for c in value) or _FORBIDDEN_IN_CMDLINE.search(value):
            raise ValueError(f"{field} must be a non-empty path without spaces: {value!r}")
    if _FORBIDDEN_IN_CMDLINE.search(cmdline):
        raise ValueError(f"kernel command line contains a control character: {cmdline!r}")
    if len(cmdline.encode()) > MAX_CMDLINE:
        raise ValueError(f"kernel command line is longer than {MAX_CMDLINE} bytes")
    if "BOOTIF=" in cmdline:
        raise ValueError("kernel command line must not carry BOOTIF; the boot config adds it")


@dataclass(frozen=True)
class DiscoveryBoot:
    """What a MAC unknown to inventory boots at a site that discovers: the memory OS, its agent in discovery mode
    (``discovery_cmdline``). Paths as in BootEntry; no BOOTIF, which each loader adds for the booting NIC."""

    kernel: str
    initrd: str
    cmdline: str

    def __post_init__(self) -> None:
        _check_boot(self.kernel, self.initrd, self.cmdline)


def tftp_path(loader: Loader | str, mac: str) -> str:
    """The file name, relative to the TFTP root, that `loader` asks for when `mac` boots."""
    loader = Loader(loader)
    if loader is Loader.PXELINUX:
        return f"{PXELINUX_DIR}/01-{hyphenated(mac)}"
    if loader is Loader.GRUB:
        return f"{GRUB_DIR}/grub.cfg-01-{hyphenated(mac)}"
    raise ValueError("iPXE scripts are served over HTTP, not written to the TFTP root")


def render(entry: BootEntry) -> str:
    """The per-MAC config text for `entry.loader`."""
    if entry.loader is Loader.PXELINUX:
        return render_pxelinux(entry)
    if entry.loader is Loader.GRUB:
        return render_grub(entry)
    return render_ipxe(entry)


def _args(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def render_pxelinux(entry: BootEntry) -> str:
    # IPAPPEND 2 makes pxelinux append BOOTIF=01-<mac of the booting NIC>; SERIAL makes the config visible
    # on a serial-over-LAN console, the only console most racked machines have.
    # syslinux wants SERIAL as the very first directive, so it comes before even the comment.
    return (
        "SERIAL 0 115200\n"
        f"# {HEADER}: install boot for {entry.mac}; removed when the install ends\n"
        "DEFAULT install\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "\n"
        "LABEL install\n"
        f"  KERNEL {entry.kernel}\n"
        f"  INITRD {entry.initrd}\n"
        f"  {_args('APPEND', entry.cmdline)}\n"
        "  IPAPPEND 2\n"
    )


def grub_quote(arg: str) -> str:
    """Quote one word for a GRUB script: ';' separates commands and '$' expands variables there."""
    if _GRUB_BARE.fullmatch(arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


def _grub_path(path: str) -> str:
    # GRUB rejects a file name that does not start with '/' or a device; pxelinux resolves the same relative
    # name against the TFTP root, so both loaders fetch the same file.
    return path if path.startswith(("/", "(")) else f"/{path}"


def _grub_words(cmdline: str) -> str:
    return " ".join(grub_quote(word) for word in cmdline.split())


# UEFI local boot: GRUB finds the installed system's loader on a local disk's EFI system partition and
# chainloads it. `exit 1` alone (back to the firmware as a failed boot option) is not enough: OVMF, like many
# servers whose boot order lists only network entries after an install, then retries the network or opens its
# setup screen instead of starting the disk.
#
# Vendor directories come before the removable-media path /EFI/BOOT/BOOTX64.EFI, which install media (a USB
# stick, a BMC's virtual CD left attached) carry too and which on Ubuntu and RHEL is a shim that starts
# fbx64.efi to rewrite the firmware's boot entries. Within a vendor, shim comes first: under Secure Boot only
# the Microsoft-signed shim passes the firmware's check, and it then verifies the vendor's GRUB. A loader that
# fails (Secure Boot refusing grubx64.efi, say) returns here and the next one is tried.
UEFI_LOCAL_LOADERS = (
    "/EFI/debian/shimx64.efi",
    "/EFI/debian/grubx64.efi",
    "/EFI/ubuntu/shimx64.efi",
    "/EFI/ubuntu/grubx64.efi",
    "/EFI/rocky/shimx64.efi",
    "/EFI/rocky/grubx64.efi",
    "/EFI/redhat/shimx64.efi",
    "/EFI/redhat/grubx64.efi",
    "/EFI/centos/shimx64.efi",
    "/EFI/centos/grubx64.efi",
    "/EFI/Microsoft/Boot/bootmgfw.efi",
    "/EFI/BOOT/BOOTX64.EFI",
)


def _grub_local() -> str:
    # `search` walks disk devices only (GRUB's device iterator has no network devices), so the TFTP server GRUB
    # came from is never a candidate. It visits hard disks (hdN; a USB stick is one too) before floppy and optical
    # drives (fdN, cdN); --no-floppy skips the former, and a match on the latter is skipped so that an installer
    # CD left attached never boots in place of the disk. FAT names match in any case.
    loaders = " \\\n".join(f"            {path}" for path in UEFI_LOCAL_LOADERS)
    return (
        "menuentry 'Boot local disk' {\n"
        "    for loader in \\\n"
        f"{loaders}; do\n"
        '        if search --no-floppy --set=root --file "$loader"; then\n'
        "            if regexp '^hd' \"$root\"; then\n"
        '                echo "Boot local disk: chainloading ($root)$loader"\n'
        '                chainloader "$loader"\n'
        "                boot\n"
        "            fi\n"
        "        fi\n"
        "    done\n"
        # Nothing bootable found: hand back to the firmware, which moves on to its next boot option.
        '    echo "Boot local disk: no loader found on a local disk, returning to the firmware"\n'
        "    exit 1\n"
        "}\n"
    )


_GRUB_LOCAL = _grub_local()


def render_grub(entry: BootEntry) -> str:
    # GRUB, unlike pxelinux and iPXE, adds no BOOTIF of its own; this file is for one MAC, so name it here.
    linux = _grub_words(_args(entry.cmdline, f"BOOTIF=01-{hyphenated(entry.mac)}"))
    return (
        f"# {HEADER}: install boot for {entry.mac}; removed when the install ends\n"
        "set timeout=0\n"
        "set default=0\n"
        # A missing kernel or initrd on the TFTP server falls back to the disk instead of a GRUB prompt.
        "set fallback=1\n"
        "\n"
        f"menuentry 'Install ({entry.mac})' {{\n"
        f"    linux {grub_quote(_grub_path(entry.kernel))} {linux}\n"
        f"    initrd {grub_quote(_grub_path(entry.initrd))}\n"
        "}\n"
        "\n" + _GRUB_LOCAL
    )


def render_ipxe(entry: BootEntry) -> str:
    # netX is the interface iPXE last opened, i.e. the one that booted; net0 is merely the first one found.
    # initrd=<name> lets an EFI-stub kernel find the initrd that iPXE loaded under that name.
    kernel_args = _args("initrd=initrd", entry.cmdline, "BOOTIF=01-${netX/mac:hexhyp}")
    return (
        "#!ipxe\n"
        f"# {HEADER}: install boot for {entry.mac}\n"
        f"kernel --name kernel {entry.kernel} {kernel_args} || goto local\n"
        f"initrd --name initrd {entry.initrd} || goto local\n"
        "boot || goto local\n"
        "\n"
        ":local\n"
        "echo Install boot failed, booting the local disk\n"
        "exit 1\n"
    )


def render_pxelinux_default(discovery: DiscoveryBoot | None = None) -> str:
    """pxelinux's fallback, read when no per-MAC file exists: the local disk, or with ``discovery`` the memory OS
    that registers the machine (every known MAC then has a per-MAC file, ``render_local``)."""
    if discovery is None:
        return (
            "SERIAL 0 115200\n"
            f"# {HEADER}: machines without an armed install boot their local disk\n"
            "DEFAULT local\n"
            "PROMPT 0\n"
            "TIMEOUT 0\n"
            "\n"
            "LABEL local\n"
            "  LOCALBOOT 0\n"
        )
    return (
        "SERIAL 0 115200\n"
        f"# {HEADER}: {DISCOVERY_NOTE}\n"
        "DEFAULT discover\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "\n"
        "LABEL discover\n"
        f"  KERNEL {discovery.kernel}\n"
        f"  INITRD {discovery.initrd}\n"
        f"  {_args('APPEND', discovery.cmdline)}\n"
        "  IPAPPEND 2\n"
        "\n"
        "LABEL local\n"
        "  LOCALBOOT 0\n"
    )


def render_grub_default(discovery: DiscoveryBoot | None = None) -> str:
    # Debian's signed grubnetx64.efi reads only grub/grub.cfg and never the per-MAC names that a
    # grub-mkimage build tries first, so this file dispatches to the per-MAC file itself. `[ -f ]` is always
    # false on GRUB's tftp device, so the configfile is attempted outright; when the file is missing GRUB
    # reports the error and carries on here, which boots the local disk (or, discovering, the memory OS).
    octet = "([0-9a-f][0-9a-f])"
    pattern = ":".join([octet] * 6)
    sets = " ".join(f"--set={i}:provisioner_m{i}" for i in range(1, 7))
    name = "-".join(f"${{provisioner_m{i}}}" for i in range(1, 7))
    if discovery is None:
        head, entry = "dispatch to the per-MAC install config, else boot the local disk", ""
    else:
        # Only inside the MAC match: without the booting NIC's MAC there is no BOOTIF, and the agent could not
        # say which MAC it registers, so such a machine boots its disk. The entry is the menu's first (default=0).
        head = DISCOVERY_NOTE
        linux = _grub_words(discovery.cmdline)
        entry = (
            "    menuentry 'Discover this machine' {\n"
            f'        linux {grub_quote(_grub_path(discovery.kernel))} {linux} "BOOTIF=01-{name}"\n'
            f"        initrd {grub_quote(_grub_path(discovery.initrd))}\n"
            "    }\n"
        )
    return (
        f"# {HEADER}: {head}\n"
        "set timeout=0\n"
        "set default=0\n"
        "\n"
        f"if regexp {sets} '^{pattern}$' \"$net_default_mac\"; then\n"
        f'    configfile "$prefix/grub.cfg-01-{name}"\n'
        f"{entry}"
        "fi\n"
        "\n" + _GRUB_LOCAL
    )


def render_local(loader: Loader | str, mac: str) -> str:
    """The per-MAC file of a MAC known to inventory at a site that discovers: its local disk, so that a known
    machine never takes the discovery path of the default. Written only where no install's file is."""
    loader, mac = Loader(loader), normalise_mac(mac)
    note = f"# {HEADER}: local boot for {mac}, known to inventory (the default discovers unknown machines)\n"
    if loader is Loader.PXELINUX:
        return "SERIAL 0 115200\n" + note + "DEFAULT local\nPROMPT 0\nTIMEOUT 0\n\nLABEL local\n  LOCALBOOT 0\n"
    if loader is Loader.GRUB:
        return note + "set timeout=0\nset default=0\n\n" + _GRUB_LOCAL
    raise ValueError("iPXE scripts are served over HTTP, not written to the TFTP root")


def render_ipxe_local() -> str:
    """The script an unknown MAC, or one with no armed install, receives."""
    return (
        "#!ipxe\n"
        f"# {HEADER}: no install armed for this machine; boot the local disk\n"
        "echo No install armed, booting the local disk\n"
        "exit 1\n"
    )


def render_ipxe_discover(discovery: DiscoveryBoot) -> str:
    """The script a MAC unknown to inventory receives at a site that discovers (kernel and initrd as URLs)."""
    kernel_args = _args("initrd=initrd", discovery.cmdline, "BOOTIF=01-${netX/mac:hexhyp}")
    return (
        "#!ipxe\n"
        f"# {HEADER}: this MAC is unknown to inventory: boot the memory OS and register (discovery)\n"
        f"kernel --name kernel {discovery.kernel} {kernel_args} || goto local\n"
        f"initrd --name initrd {discovery.initrd} || goto local\n"
        "boot || goto local\n"
        "\n"
        ":local\n"
        "echo Discovery boot failed, booting the local disk\n"
        "exit 1\n"
    )
