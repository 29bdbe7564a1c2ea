import getpass

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.service import Actor, record
from inventory import hostping
from inventory.models import Machine, Site
from provisioner.bmc import hostping as icmp


class Command(BaseCommand):
    help = (
        "Ping machines' hosts (their primary NIC's address) from here, now, store the results as the site "
        "worker's periodic ping does, and print them. Name machines, or --site SLUG for all of a site."
    )

    def add_arguments(self, parser):
        parser.add_argument("hostnames", nargs="*")
        parser.add_argument("--site", help="every machine of this site")

    def handle(self, *args, hostnames, site, **options):
        if not hostnames and not site:
            raise CommandError("Name machines, or a site with --site.")
        machines = Machine.objects.prefetch_related("nics").order_by("hostname")
        if site:
            if not Site.objects.filter(slug=site).exists():
                raise CommandError(f"No site {site!r}.")
            machines = machines.filter(rack__site__slug=site)
        if hostnames:
            wanted = {h.lower() for h in hostnames}
            machines = machines.filter(hostname__in=wanted)
            missing = sorted(wanted - {m.hostname for m in machines})
            if missing:
                raise CommandError(f"No such machine(s): {', '.join(missing)}.")
        machines = list(machines)
        try:
            method = icmp.choose(settings.HOST_PING_METHOD)
        except icmp.PingUnavailable as exc:
            raise CommandError(f"Cannot ping from here: {exc}") from None
        actor = Actor.system(f"cli:{getpass.getuser()}")
        with transaction.atomic():
            for machine in machines:
                record(actor, "machine.host_ping", machine, {"from": "cli"})
        hostping.ping_machines([m.pk for m in machines])
        width = max((len(m.hostname) for m in machines), default=0)
        for machine in Machine.objects.filter(pk__in=[m.pk for m in machines]).prefetch_related("nics"):
            address = machine.host_address or "-"
            if machine.host_reachable:
                said = f"answers in {machine.host_latency_ms} ms"
            else:
                said = machine.host_last_error or "no answer"
            self.stdout.write(f"{machine.hostname:<{width}}  {address:<15}  {said}")
        self.stdout.write(f"({len(machines)} pinged through the {method}; set HOST_PING_METHOD to choose)")
