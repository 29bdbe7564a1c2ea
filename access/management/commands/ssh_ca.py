import getpass

from django.core.management.base import BaseCommand, CommandError

from audit.service import Actor
from inventory.models import Site

from ... import ca
from ...models import SiteCA


class Command(BaseCommand):
    help = (
        "Print a site's SSH user CA public key(s), the lines of /etc/ssh/provisioner-user-ca.pub on its machines "
        "(current first, then the previous one while a rotation settles). The CA is made on first use. "
        "--rotate makes a new key current and keeps the old one trusted; --push writes the trust file "
        "to the site's deployed machines through the site login (audited per machine). Rotate again only once "
        "every machine has the current key: a second rotation drops the oldest."
    )

    def add_arguments(self, parser):
        parser.add_argument("site", help="The site's slug.")
        parser.add_argument("--rotate", action="store_true", help="Make a new CA key; the old one stays trusted.")
        parser.add_argument("--push", action="store_true", help="Write the trust file to the deployed machines.")

    def handle(self, *args, site, rotate, push, **options):
        found = Site.objects.filter(slug=site).first()
        if found is None:
            raise CommandError(f"No site {site!r}.")
        actor = Actor.system(f"manage.py ssh_ca ({getpass.getuser()})")
        authority = ca.rotate(found, actor) if rotate else SiteCA.for_site(found)
        for line in authority.trusted_keys():
            self.stdout.write(line)
        if not push:
            return
        results = ca.push(found, actor)
        if not results:
            self.stderr.write(f"Site {found.slug} has no deployed machines to update.")
        failed = 0
        for r in results:
            status = "ok" if r.ok else (f"exit {r.exit_status}" if r.exit_status is not None else r.reason)
            detail = r.message or r.output.strip()
            self.stderr.write(f"{r.hostname}: {status}" + (f" ({detail})" if detail else ""))
            failed += not r.ok
        if failed:
            raise CommandError(
                f"{failed} of {len(results)} machine(s) were not updated: they trust only the previous key, until "
                "the next rotation. Fix them and run `ssh_ca SITE --push` (without --rotate) again.",
                returncode=1,
            )
