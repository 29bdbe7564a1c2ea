"""The site's PXE server as a dnsmasq configuration: DHCP (owning a range or proxy-DHCP) and TFTP.

`render` is a pure function of two frozen dataclasses, so golden files pin the output byte for byte. Every value
is checked before it reaches the text: dnsmasq reads commas as field separators and stops at whitespace, so a
stray character would not fail loudly but silently change what a machine boots.

Boot file by what the client is (DHCP option 93, client architecture, and the iPXE user class / option 175):
  BIOS PXE (arch 0)            -> pxelinux.0, which fetches pxelinux.cfg/01-<mac>
  x86-64 UEFI (arch 7 and 9)   -> the GRUB network image, which fetches grub/grub.cfg-01-<mac>
  iPXE, whatever its firmware  -> <base_url>/boot/ipxe?mac=<mac> over HTTP
"""

import ipaddress
import re
from dataclasses import dataclass

from provisioner.pxe.mac import normalise_mac

# RFC 4578 names 7 "EFI BC" and 9 "EFI x86-64", but firmware sends either for x86-64 UEFI (the registry
# entries were swapped for years), so both get the GRUB image.
ARCH_BIOS = 0
ARCH_EFI_X64 = (7, 9)
# dnsmasq's names for those architectures in pxe-service lines.
PXE_CSA_BIOS = "x86PC"
PXE_CSA_EFI_X64 = ("x86-64_EFI", "BC_EFI")
# The BOOTP `file` field is 128 bytes and dnsmasq truncates a longer name without a word.
MAX_BOOT_FILE = 127
# dnsmasq refuses leases shorter than two minutes.
MIN_LEASE_SECONDS = 120

_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_INTERFACE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_LEASE = re.compile(r"(?P<n>[0-9]+)(?P<unit>[smhdw]?)|infinite")
_LEASE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_BOOT_FILE = re.compile(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")
_BASE_URL = re.compile(r"https?://[A-Za-z0-9.:\[\]_-]+(/[A-Za-z0-9._~%!$&'()*+;=:@/-]*)?")
# Characters that end or split a dnsmasq value: separators, comment, quoting, whitespace, controls.
_UNSAFE_IN_VALUE = re.compile(r"[\s,#\"\\\x00-\x1f\x7f]")


def _ipv4(value: object, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        raise ValueError(f"{what} is not an IPv4 address: {value!r}") from None


def _hostname(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) > 253 or not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{what} is not a lower-case RFC 1123 host name: {value!r}")
    return value


@dataclass(frozen=True)
class Reservation:
    """One PXE NIC that always gets the same address: MAC -> IP -> host name."""

    mac: str
    ip: str
    hostname: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", normalise_mac(self.mac))
        object.__setattr__(self, "ip", str(_ipv4(self.ip, f"reserved address of {self.mac}")))
        _hostname(self.hostname, f"host name of {self.mac}")


@dataclass(frozen=True)
class SiteDhcp:
    """What the site's PXE server needs that inventory does not hold: its network and how it shares it.

    Exactly one of `dhcp_range` (dnsmasq owns the addresses: first and last of the dynamic range) and
    `proxy_subnet` (an existing DHCP server hands out addresses; dnsmasq only adds the boot information).
    `user` is who dnsmasq runs as: with tftp-secure it serves only files that user owns, so it must be the user
    that writes the boot configs (the site's worker).
    """

    site: str
    interface: str
    server_ip: str
    tftp_root: str
    base_url: str
    dhcp_range: tuple[str, str] | None = None
    proxy_subnet: str | None = None
    router: str | None = None
    dns_servers: tuple[str, ...] = ()
    domain: str | None = None
    lease_time: str = "1h"
    user: str = "dnsmasq"
    bios_boot_file: str = "pxelinux.0"
    efi_boot_file: str = "grubx64.efi"

    def __post_init__(self) -> None:
        if not isinstance(self.site, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", self.site):
            raise ValueError(f"site slug may hold only letters, digits, '-' and '_': {self.site!r}")
        if not isinstance(self.interface, str) or not _INTERFACE.fullmatch(self.interface):
            raise ValueError(
                f"interface is not a Linux interface name (at most 15 of A-Z a-z 0-9 _ . -): {self.interface!r}"
            )
        server = _ipv4(self.server_ip, "server IP")
        object.__setattr__(self, "server_ip", str(server))
        self._check_tftp_root()
        self._check_base_url()
        self._check_mode(server)
        if self.router is not None:
            object.__setattr__(self, "router", str(_ipv4(self.router, "router")))
        if isinstance(self.dns_servers, str):
            raise ValueError(f"DNS servers must be a sequence of addresses, not one string: {self.dns_servers!r}")
        object.__setattr__(self, "dns_servers", tuple(str(_ipv4(s, "DNS server")) for s in self.dns_servers))
        if self.domain is not None:
            _hostname(self.domain, "domain")
        self._check_lease_time()
        if not isinstance(self.user, str) or not _USER.fullmatch(self.user):
            raise ValueError(f"user is not a Unix user name: {self.user!r}")
        for name in ("bios_boot_file", "efi_boot_file"):
            value = getattr(self, name)
            if (
                not isinstance(value, str)
                or not _BOOT_FILE.fullmatch(value)
                or ".." in value.split("/")
                or len(value) > MAX_BOOT_FILE
            ):
                raise ValueError(f"{name} must be a path relative to the TFTP root without '..': {value!r}")
        if len(self.ipxe_url) > MAX_BOOT_FILE:
            raise ValueError(
                f"iPXE boot URL is longer than the {MAX_BOOT_FILE} bytes DHCP can carry: {self.ipxe_url!r}"
            )

    def _check_tftp_root(self) -> None:
        root = self.tftp_root
        if not isinstance(root, str) or not root.startswith("/") or _UNSAFE_IN_VALUE.search(root):
            raise ValueError(f"TFTP root must be an absolute path without spaces or commas: {root!r}")
        if ".." in root.split("/"):
            raise ValueError(f"TFTP root must not contain '..': {root!r}")

    def _check_base_url(self) -> None:
        url = self.base_url
        if not isinstance(url, str) or not _BASE_URL.fullmatch(url) or _UNSAFE_IN_VALUE.search(url):
            raise ValueError(f"base URL must be http(s)://host[:port][/path] without query or fragment: {url!r}")

    def _check_mode(self, server: ipaddress.IPv4Address) -> None:
        if (self.dhcp_range is None) == (self.proxy_subnet is None):
            raise ValueError("give exactly one of a DHCP range (owning the addresses) and a proxy subnet")
        if self.dhcp_range is not None:
            if isinstance(self.dhcp_range, str) or len(self.dhcp_range) != 2:
                raise ValueError(f"DHCP range must be (first, last): {self.dhcp_range!r}")
            first = _ipv4(self.dhcp_range[0], "first address of the DHCP range")
            last = _ipv4(self.dhcp_range[1], "last address of the DHCP range")
            if first > last:
                raise ValueError(f"DHCP range is backwards: {first} is after {last}")
            if first <= server <= last:
                raise ValueError(f"server IP {server} lies inside its own DHCP range {first}-{last}")
            object.__setattr__(self, "dhcp_range", (str(first), str(last)))
            return
        try:
            subnet = ipaddress.IPv4Network(str(self.proxy_subnet).strip())
        except ValueError:
            raise ValueError(
                f"proxy subnet is not an IPv4 network such as 10.0.0.0/24: {self.proxy_subnet!r}"
            ) from None
        if server not in subnet:
            raise ValueError(f"server IP {server} is not in the proxy subnet {subnet}")
        given = [name for name in ("router", "dns_servers", "domain") if getattr(self, name)]
        if given:
            raise ValueError(f"{', '.join(given)} cannot be set in proxy mode: the existing DHCP server sends those")
        object.__setattr__(self, "proxy_subnet", str(subnet))

    def _check_lease_time(self) -> None:
        match = _LEASE.fullmatch(str(self.lease_time))
        if not match:
            raise ValueError(
                f"lease time must be seconds or a number with s/m/h/d/w, or 'infinite': {self.lease_time!r}"
            )
        if match["n"] is not None and int(match["n"]) * _LEASE_UNITS[match["unit"]] < MIN_LEASE_SECONDS:
            raise ValueError(f"lease time {self.lease_time!r} is shorter than dnsmasq's minimum of two minutes")

    @property
    def proxy(self) -> bool:
        return self.proxy_subnet is not None

    @property
    def ipxe_url(self) -> str:
        # iPXE expands ${netX/mac} (the NIC it booted from) before fetching, so one line serves every machine.
        return f"{self.base_url.rstrip('/')}/boot/ipxe?mac=${{netX/mac}}"


def _check_reservations(site: SiteDhcp, reservations: tuple[Reservation, ...]) -> None:
    if site.proxy and reservations:
        raise ValueError(
            "reservations need dnsmasq to own the range; in proxy mode the existing DHCP server hands out addresses"
        )
    taken: dict[str, dict[str, Reservation]] = {"MAC": {}, "IP": {}, "host name": {}}
    for reservation in reservations:
        if not isinstance(reservation, Reservation):
            raise ValueError(f"not a Reservation: {reservation!r}")
        for kind, value in (("MAC", reservation.mac), ("IP", reservation.ip), ("host name", reservation.hostname)):
            other = taken[kind].get(value)
            if other is not None:
                raise ValueError(f"{kind} {value} is reserved twice: for {other.hostname} and {reservation.hostname}")
            taken[kind][value] = reservation
        if reservation.ip in (site.server_ip, site.router):
            raise ValueError(f"{reservation.hostname} is reserved {reservation.ip}, the server's or router's address")


def render(site: SiteDhcp, reservations: tuple[Reservation, ...] | list[Reservation] = ()) -> str:
    """The dnsmasq configuration text for `site`, with one dhcp-host line per reservation (owning mode only)."""
    if not isinstance(site, SiteDhcp):
        raise ValueError(f"not a SiteDhcp: {site!r}")
    reservations = tuple(reservations)
    _check_reservations(site, reservations)
    mode = f"proxy-DHCP beside the existing DHCP server on {site.proxy_subnet}" if site.proxy else "owning the range"
    out = [
        f"# dnsmasq for site {site.site}: {mode}.",
        f"# Generated by `manage.py pxe_server_config --site {site.site}`; changes made here are overwritten.",
        "",
        "# DHCP and TFTP only: DNS stays with the site's resolvers.",
        "port=0",
        "# Only the provisioning interface: dnsmasq would otherwise also serve TFTP on loopback.",
        f"interface={site.interface}",
        "except-interface=lo",
        "bind-interfaces",
        f"user={site.user}",
        "log-dhcp",
        "# Keep the BOOTP file and server-name fields for what they say: some PXE ROMs read nothing else.",
        "dhcp-no-override",
        "",
        "# tftp-secure serves only files owned by the user above, the one that writes the boot configs.",
        "enable-tftp",
        f"tftp-root={site.tftp_root}",
        "tftp-secure",
        "",
    ]
    if site.proxy:
        subnet = ipaddress.IPv4Network(site.proxy_subnet)
        out.append(f"dhcp-range={subnet.network_address},proxy,{subnet.netmask}")
    else:
        first, last = site.dhcp_range
        out += [
            "# The only DHCP server on this network: answer at once, and NAK leases it did not give.",
            "dhcp-authoritative",
            f"dhcp-range={first},{last},{site.lease_time}",
        ]
        if site.router is not None:
            out.append(f"dhcp-option=option:router,{site.router}")
        else:
            out += [
                "# No router given: send none, rather than dnsmasq's default of naming itself.",
                "dhcp-option=option:router",
            ]
        if site.dns_servers:
            out.append(f"dhcp-option=option:dns-server,{','.join(site.dns_servers)}")
        if site.domain is not None:
            out.append(f"domain={site.domain}")
    out += [
        "",
        "# Who is asking: option 93 gives the firmware; iPXE announces itself by user class and option 175.",
        f"dhcp-match=set:bios,option:client-arch,{ARCH_BIOS}",
        *(f"dhcp-match=set:efi64,option:client-arch,{arch}" for arch in ARCH_EFI_X64),
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-match=set:ipxe,175",
        "",
        "# iPXE gets the HTTP script, never a loader again, so it cannot loop fetching itself.",
        f"dhcp-boot=tag:ipxe,{site.ipxe_url}",
        f"dhcp-boot=tag:bios,tag:!ipxe,{site.bios_boot_file},,{site.server_ip}",
        f"dhcp-boot=tag:efi64,tag:!ipxe,{site.efi_boot_file},,{site.server_ip}",
    ]
    if site.proxy:
        out += [
            "",
            "# Proxy-DHCP answers PXE ROMs with a boot menu; one entry per architecture boots without a prompt.",
            f'pxe-service=tag:!ipxe,{PXE_CSA_BIOS},"provisioner (BIOS)",{site.bios_boot_file},{site.server_ip}',
            *(
                f'pxe-service=tag:!ipxe,{csa},"provisioner (UEFI)",{site.efi_boot_file},{site.server_ip}'
                for csa in PXE_CSA_EFI_X64
            ),
        ]
    if reservations:
        out += ["", "# One fixed address per PXE NIC with a static IP in inventory: MAC, address, host name."]
        for reservation in sorted(reservations, key=lambda r: ipaddress.IPv4Address(r.ip)):
            out.append(f"dhcp-host={reservation.mac},{reservation.ip},{reservation.hostname}")
    return "\n".join(out) + "\n"
