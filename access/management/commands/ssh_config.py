from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inventory.models import Site

from ...sshconfig import known_hosts as render_known_hosts
from ...sshconfig import ssh_config


class Command(BaseCommand):
    help = (
        "Print an OpenSSH client config with a Host entry per machine (HostName = its PXE NIC's IP) and ProxyJump "
        "through its site's jump hosts, so `ssh web01` goes the way provisioner goes. Save it and add "
        "`Include ~/.ssh/provisioner.conf` to ~/.ssh/config."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", metavar="SLUG", help="Only this site (default: every site).")
        parser.add_argument(
            "--known-hosts",
            metavar="PATH",
            help="Also write the pinned host keys of jump hosts and machines to PATH, and make every entry use "
            "that file with StrictHostKeyChecking yes.",
        )

    def handle(self, *args, site=None, known_hosts=None, **options):
        if site and not Site.objects.filter(slug=site).exists():
            raise CommandError(f"No site with slug {site!r}.")
        if known_hosts:
            path = Path(known_hosts).expanduser().resolve()
            path.write_text(render_known_hosts(site))
            known_hosts = str(path)
        self.stdout.write(ssh_config(site, known_hosts_path=known_hosts), ending="")
