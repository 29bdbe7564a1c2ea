import getpass
import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.service import Actor, record
from inventory import credentials_check
from inventory.models import CredentialCheck, Machine, Site


class Command(BaseCommand):
    help = (
        "BMC credentials at scale. `test [HOSTNAME ...] [--site SLUG]`: one login attempt per BMC (never "
        "repeated, so no account locks), run from here, and print ok / rejected / unreachable / skipped per "
        "machine. `report ID`: print a stored test's report. `site-default SLUG --username USER`: set a site's "
        "default BMC credentials (password asked for, or read from stdin with --password-stdin)."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="what", required=True)
        test = sub.add_parser("test")
        test.add_argument("hostnames", nargs="*")
        test.add_argument("--site", help="every machine of this site that has a BMC")
        test.add_argument("--queue", action="store_true", help="run on the sites' workers instead; print the id")
        report = sub.add_parser("report")
        report.add_argument("check_id", type=int)
        default = sub.add_parser("site-default")
        default.add_argument("slug")
        default.add_argument("--username", required=True)
        default.add_argument("--password-stdin", action="store_true")

    def handle(self, *args, what, **options):
        actor = Actor.system(f"cli:{getpass.getuser()}")
        if what == "test":
            return self.test(actor, options["hostnames"], options["site"], options["queue"])
        if what == "report":
            check = CredentialCheck.objects.filter(pk=options["check_id"]).first()
            if check is None:
                raise CommandError(f"No credential test {options['check_id']}.")
            return self.print_report(check)
        return self.site_default(actor, options["slug"], options["username"], options["password_stdin"])

    def test(self, actor, hostnames, slug, queue):
        if not hostnames and not slug:
            raise CommandError("Name machines, or a site with --site.")
        machines = Machine.objects.select_related("rack__site")
        if slug:
            if not Site.objects.filter(slug=slug).exists():
                raise CommandError(f"No site {slug!r}.")
            machines = machines.filter(rack__site__slug=slug, bmc__isnull=False)
        if hostnames:
            machines = machines.filter(hostname__in=[h.lower() for h in hostnames])
            missing = sorted({h.lower() for h in hostnames} - set(machines.values_list("hostname", flat=True)))
            if missing:
                raise CommandError(f"No such machine(s): {', '.join(missing)}.")
        try:
            check = credentials_check.start(list(machines.order_by("hostname")), actor, enqueue=queue)
        except credentials_check.CheckRefused as exc:
            raise CommandError(str(exc)) from None
        if queue:
            self.stdout.write(f"Credential test {check.pk} queued; `manage.py bmc_credentials report {check.pk}`.")
            return
        for site in sorted({m.rack.site.slug for m in machines}):
            credentials_check.run(check.pk, site)
        check.refresh_from_db()
        self.print_report(check)

    def print_report(self, check):
        rows = credentials_check.report(check)
        width = max((len(r.machine.hostname) for r in rows), default=0)
        when = f"{check.created_at:%Y-%m-%d %H:%M}"
        self.stdout.write(f"Credential test {check.pk}, by {check.requested_by_label}, {when}")
        for row in rows:
            who = f"{row.username or '-'} ({row.source})" if row.source else ""
            line = f"{row.machine.hostname:<{width}}  {row.result or 'pending'}  {who}  {row.detail}"
            self.stdout.write(line.rstrip())
        counts = {}
        for row in rows:
            counts[row.result or "pending"] = counts.get(row.result or "pending", 0) + 1
        order = ["ok", "rejected", "unreachable", "skipped", "pending"]
        self.stdout.write(", ".join(f"{counts[k]} {k}" for k in order if k in counts))

    def site_default(self, actor, slug, username, from_stdin):
        site = Site.objects.filter(slug=slug).first()
        if site is None:
            raise CommandError(f"No site {slug!r}.")
        password = sys.stdin.readline().rstrip("\n") if from_stdin else getpass.getpass("Default BMC password: ")
        if not password:
            raise CommandError("The password is empty; nothing was changed.")
        with transaction.atomic():
            site.bmc_username = username
            site.set_bmc_password(password)
            site.save(update_fields=["bmc_username", "bmc_password_ciphertext"])
            record(actor, "site.bmc_defaults", site, {"username": username, "password": "changed"})
        self.stdout.write(f"{site.slug}: default BMC user {username!r}, password set (write-only).")
