import getpass

from django.core.management.base import BaseCommand, CommandError

from audit.service import Actor
from inventory import health, power
from inventory.crypto import FieldDecryptError
from inventory.models import Machine
from provisioner.bmc import BmcError

# Read from the BMC now (and stored, as the site worker's read is), or cleared: audited like power actions.
HEALTH_ACTIONS = ("sensors", "events", "sel-clear")


class Command(BaseCommand):
    help = (
        "Out-of-band action on one machine: status, on, off, cycle, pxe (next boot from network), disk, ping. "
        "Through its BMC; through its PDU outlets when it has no BMC, or for on/off/cycle when the BMC hangs. "
        "sensors and events (read from the BMC now), sel-clear (clear its system event log; audited)."
    )

    def add_arguments(self, parser):
        parser.add_argument("hostname")
        parser.add_argument("action", choices=power.ACTIONS + HEALTH_ACTIONS)

    def handle(self, *args, hostname, action, **options):
        machine = Machine.objects.select_related("bmc").filter(hostname=hostname.lower()).first()
        if machine is None:
            raise CommandError(f"No machine named {hostname}.")
        actor = Actor.system(f"cli:{getpass.getuser()}")
        try:
            if action == "sel-clear":
                self.stdout.write(health.clear(machine, actor))
            elif action in HEALTH_ACTIONS:
                self._show(machine, action, health.read(machine))
            else:
                self.stdout.write(power.perform(machine, action, actor))
        except (power.PowerActionRefused, BmcError, FieldDecryptError) as exc:
            raise CommandError(f"{machine.hostname}: {exc}" if isinstance(exc, BmcError) else str(exc)) from None

    def _show(self, machine, action: str, row) -> None:
        error = row.sensors_error if action == "sensors" else row.events_error
        if error:
            raise CommandError(error)
        if action == "sensors":
            readings = health.sensors_of(row)
            if not readings:
                self.stdout.write(f"{machine.hostname}: the BMC lists no sensors")
            for s in readings:
                value = f"{s.value:g} {s.unit}".strip() if s.value is not None else ", ".join(s.states) or "no reading"
                limits = " ".join(
                    f"{label}={limit:g}"
                    for label, limit in (("lc", s.lower_critical), ("lnc", s.lower_non_critical),
                                         ("unc", s.upper_non_critical), ("uc", s.upper_critical))
                    if limit is not None
                )  # fmt: skip
                self.stdout.write(f"{s.name:<24} {value:>14}  {s.health:<8} {limits}".rstrip())
            return
        entries = list(reversed(health.events_of(row)))  # oldest first, as a log reads
        if not entries:
            self.stdout.write(f"{machine.hostname}: the event log is empty")
        for e in entries:
            at = e.at.isoformat() if e.at else "-"
            self.stdout.write(f"{e.id:>5} {at:<25} {e.severity:<8} {e.sensor}: {e.message}")
