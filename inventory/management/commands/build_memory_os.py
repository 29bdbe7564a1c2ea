"""`manage.py build_memory_os [--output DIR] [--site SLUG]`: build the memory OS and publish it where the
memory-os-image profile points, in the given TFTP roots or else in every site's."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inventory.models import Site
from provisioner.memory_os.build import MIRROR, BuildError, build, publish, summary


class Command(BaseCommand):
    help = (
        "Build the memory OS (Debian kernel + initramfs with the agent; needs root and debootstrap) into the build "
        "cache, keyed by its inputs so an unchanged build is reused, and publish kernel, initramfs and manifest to "
        "each TFTP root: --output, else the roots of --site, else of every site."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", action="append", default=[], help="A TFTP root to publish to; repeatable.")
        parser.add_argument("--site", action="append", default=[], help="Publish to this site's TFTP root; repeatable.")
        parser.add_argument("--cache", default=str(Path(settings.BASE_DIR) / "var" / "memory-os"))
        parser.add_argument("--mirror", default=MIRROR, help="Debian mirror for debootstrap.")
        parser.add_argument("--force", action="store_true", help="Rebuild even when the cache holds these inputs.")

    def handle(self, *args, output, site, cache, mirror, force, **options):
        roots = [Path(p) for p in output]
        if not roots:
            sites = Site.objects.filter(slug__in=site) if site else Site.objects.all()
            if site and len(sites) != len(set(site)):
                known = ", ".join(Site.objects.values_list("slug", flat=True)) or "none"
                raise CommandError(f"No site named {', '.join(sorted(set(site) - {s.slug for s in sites}))} "
                                   f"(known: {known}).")  # fmt: skip
            roots = [Path(s.tftp_root) for s in sites]
        if not roots:
            raise CommandError("No TFTP root to publish to: pass --output DIR or add a site.")
        try:
            result = build(Path(cache), mirror=mirror, force=force, log=self.stdout.write)
        except BuildError as exc:
            raise CommandError(str(exc)) from None
        for root in roots:
            for path in publish(result, root):
                self.stdout.write(f"wrote {path}")
        self.stdout.write(summary(result))
