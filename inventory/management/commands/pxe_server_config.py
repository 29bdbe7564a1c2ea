"""`manage.py pxe_server_config --site <slug>`: the site's dnsmasq config (DHCP + TFTP) from inventory.

Django names commands after their module, so the issue's `pxe-server-config` is spelled `pxe_server_config`.
"""

import ipaddress
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inventory.models import NIC, Site
from provisioner.pxe.dnsmasq import Reservation, SiteDhcp, render
from provisioner.pxe.tftp import atomic_write


def _range(value: str) -> tuple[str, str]:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2:
        raise ValueError(f"--range takes START,END: {value!r}")
    return parts[0], parts[1]


def _addresses(values: list[str] | None) -> tuple[str, ...]:
    # Accept both `--dns a --dns b` and `--dns a,b`.
    return tuple(part.strip() for value in values or () for part in value.split(",") if part.strip())


class Command(BaseCommand):
    help = (
        "Write the dnsmasq configuration for a site's PXE server: boot file by client architecture, TFTP from the "
        "site's TFTP root, and either owning a DHCP range (with a reservation per PXE NIC that has a static IP) "
        "or proxy-DHCP beside an existing DHCP server. (The command is spelled pxe_server_config, not "
        "pxe-server-config: Django names commands after their module.)"
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", required=True, help="Slug of the site.")
        parser.add_argument("--output", "-o", help="File to write (atomically); '-' or absent: standard output.")
        parser.add_argument("--interface", required=True, help="Interface of the PXE network on the PXE server.")
        parser.add_argument(
            "--server-ip", required=True, help="The PXE server's own address on that interface (TFTP next-server)."
        )
        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument("--range", metavar="START,END", help="Own the network: hand out START..END.")
        mode.add_argument(
            "--proxy", metavar="SUBNET", help="Proxy-DHCP beside the existing DHCP server of SUBNET (e.g. 10.0.0.0/24)."
        )
        parser.add_argument("--router", help="Default gateway handed out (owning mode). Without it none is sent.")
        parser.add_argument(
            "--dns", action="append", metavar="IP[,IP]", help="DNS servers handed out (owning mode); repeatable."
        )
        parser.add_argument("--domain", help="DNS domain handed out (owning mode).")
        parser.add_argument("--lease-time", default="1h", help="Lease time (owning mode), e.g. 1h, 12h, 3600.")
        parser.add_argument(
            "--user",
            default="dnsmasq",
            help="User dnsmasq runs as. tftp-secure serves only files this user owns: use the user the site's "
            "worker runs as, which writes the boot configs.",
        )
        parser.add_argument("--bios-boot-file", default="pxelinux.0", help="BIOS loader, relative to the TFTP root.")
        parser.add_argument(
            "--efi-boot-file", default="grubx64.efi", help="x86-64 UEFI GRUB network image, relative to the TFTP root."
        )

    def handle(self, *args, site, output, **options):
        site_row = Site.objects.filter(slug=site).first()
        if site_row is None:
            known = ", ".join(Site.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"No site {site!r} (known: {known}).")
        try:
            dhcp = SiteDhcp(
                site=site_row.slug,
                interface=options["interface"],
                server_ip=options["server_ip"],
                tftp_root=site_row.tftp_root,
                base_url=site_row.base_url,
                dhcp_range=_range(options["range"]) if options["range"] else None,
                proxy_subnet=options["proxy"],
                router=options["router"],
                dns_servers=_addresses(options["dns"]),
                domain=options["domain"],
                lease_time=options["lease_time"],
                user=options["user"],
                bios_boot_file=options["bios_boot_file"],
                efi_boot_file=options["efi_boot_file"],
            )
            reservations = self._reservations(site_row)
            if dhcp.proxy:
                if reservations:
                    self.stderr.write(
                        f"Proxy mode: the existing DHCP server hands out addresses; reserve these "
                        f"{len(reservations)} PXE NICs there: "
                        + ", ".join(f"{r.hostname} {r.mac} {r.ip}" for r in reservations)
                    )
                reservations = []
            text = render(dhcp, reservations)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        if output in (None, "-"):
            self.stdout.write(text, ending="")
            return
        path = Path(output)
        atomic_write(path, text)
        self.stderr.write(f"Wrote {path} for site {site_row.slug} ({len(reservations)} reservations).")

    def _reservations(self, site: Site) -> list[Reservation]:
        """Every PXE NIC at `site` with a static IPv4 address; machines without one get an address from the range."""
        nics = (
            NIC.objects.filter(is_pxe=True, machine__rack__site=site, ip__isnull=False)
            .select_related("machine")
            .order_by("machine__hostname")
        )
        reservations = []
        for nic in nics:
            if ipaddress.ip_address(nic.ip).version != 4:
                self.stderr.write(f"Skipping {nic.machine.hostname}: {nic.ip} is IPv6 and DHCPv4 cannot reserve it.")
                continue
            try:
                reservations.append(Reservation(mac=nic.mac, ip=nic.ip, hostname=nic.machine.hostname))
            except ValueError as exc:
                raise ValueError(f"{nic.machine.hostname}: {exc}") from None
        return reservations
