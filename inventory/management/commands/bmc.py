import getpass

from django.core.management.base import BaseCommand, CommandError

from audit.service import Actor
from inventory import power
from inventory.crypto import FieldDecryptError
from inventory.models import Machine
from provisioner.bmc import BmcError


class Command(BaseCommand):
    help = (
        "Out-of-band action on one machine: status, on, off, cycle, pxe (next boot from network), disk, ping. "
        "Through its BMC; through its PDU outlets when it has no BMC, or for on/off/cycle when the BMC hangs."
    )

    def add_arguments(self, parser):
        parser.add_argument("hostname")
        parser.add_argument("action", choices=power.ACTIONS)

    def handle(self, *args, hostname, action, **options):
        machine = Machine.objects.select_related("bmc").filter(hostname=hostname.lower()).first()
        if machine is None:
            raise CommandError(f"No machine named {hostname}.")
        actor = Actor.system(f"cli:{getpass.getuser()}")
        try:
            self.stdout.write(power.perform(machine, action, actor))
        except (power.PowerActionRefused, BmcError, FieldDecryptError) as exc:
            raise CommandError(f"{machine.hostname}: {exc}" if isinstance(exc, BmcError) else str(exc)) from None
