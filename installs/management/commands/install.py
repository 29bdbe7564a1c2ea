import getpass

from django.core.management.base import BaseCommand, CommandError

from audit.service import Actor
from installs.batches import InstallRefused, request_installs
from installs.library import BOOTS
from inventory.models import Machine, OSProfile


class Command(BaseCommand):
    help = "Install machines with a profile, as one batch: manage.py install web01 web02 --profile debian-12-preseed"

    def add_arguments(self, parser):
        parser.add_argument("hostnames", nargs="+")
        parser.add_argument("--profile", required=True)
        parser.add_argument("--batch-size", type=int, help="At most this many installing at once per site.")
        parser.add_argument("--per-rack", type=int, help="At most this many installing at once per rack.")
        parser.add_argument("--stagger", type=float, help="Seconds between power-ons in one rack.")
        parser.add_argument("--name", default="", help="A name for the batch.")
        parser.add_argument(
            "--boot",
            choices=[b for b in BOOTS if b],
            default="",
            help="Boot the machines from the network or from virtual media (an ISO the BMC attaches, for sites "
            "without DHCP or PXE), whatever the profile's stock workflow does.",
        )

    def handle(self, *args, hostnames, profile, batch_size, per_rack, stagger, name, boot, **options):
        profile_obj = OSProfile.objects.filter(name=profile).first()
        if profile_obj is None:
            known = ", ".join(OSProfile.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No profile named {profile} (known: {known}).")
        wanted = [h.lower() for h in hostnames]
        machines = dict(Machine.objects.filter(hostname__in=wanted).values_list("hostname", "pk"))
        missing = [h for h in wanted if h not in machines]
        if missing:
            raise CommandError(f"No machine named {', '.join(missing)}.")
        try:
            batch = request_installs(
                list(machines.values()),
                profile_obj,
                Actor.system(f"cli:{getpass.getuser()}"),
                name=name,
                max_per_site=batch_size,
                max_per_rack=per_rack,
                stagger_s=stagger,
                boot=boot,
            )
        except InstallRefused as exc:
            raise CommandError("Refused:\n  " + "\n  ".join(exc.args[0])) from None
        ids = list(batch.installs.values_list("pk", flat=True))
        self.stdout.write(f"Batch {batch.pk}: {len(ids)} install(s) queued ({', '.join(map(str, ids))}).")
