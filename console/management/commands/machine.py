import getpass
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.service import Actor
from console import hardware, lifecycle_actions
from installs.library import BOOTS
from installs.models import ACTIVE_STATES, Install
from inventory import lifecycle
from inventory.models import Machine


class Command(BaseCommand):
    help = (
        "A machine's lifecycle. Without an action: its status, why and since when, its hardware, and the actions "
        "its status allows. With one: commission, test, deploy, release (operations, run as an install), or "
        "mark-broken, mark-fixed, enter-maintenance, exit-maintenance (status changes, audited with --reason)."
    )

    def add_arguments(self, parser):
        parser.add_argument("hostname")
        parser.add_argument("action", nargs="?", choices=list(lifecycle.ACTIONS))
        parser.add_argument("--reason", default="", help="Why: required to mark broken or fixed and for maintenance.")
        parser.add_argument("--profile", default="", help="deploy: the OS profile to install.")
        parser.add_argument("--boot", choices=[b for b in BOOTS if b], default="", help="deploy: how it boots.")
        parser.add_argument("--workflow", default="", help="test: the workflow to run (default stock-test).")
        parser.add_argument("--cpu-burn-s", type=int, help="test: how long to burn the CPUs, in seconds.")
        parser.add_argument("--nic-speed-mbps", type=int, help="test: the NIC link speed expected, in Mb/s.")
        parser.add_argument(
            "--yes", action="store_true", help="Confirm deploy or release without typing the hostname (scripts)."
        )

    def handle(self, *args, hostname, action, reason, profile, boot, workflow, cpu_burn_s, nic_speed_mbps, yes,
               **options):  # fmt: skip
        machine = Machine.objects.select_related("rack__site").filter(hostname=hostname.lower()).first()
        if machine is None:
            raise CommandError(f"No machine named {hostname}.")
        if not action:
            self._show(machine)
            return
        try:
            req = lifecycle_actions.parse(
                action, reason=reason, profile=profile, workflow=workflow, cpu_burn_s=cpu_burn_s,
                nic_speed_mbps=nic_speed_mbps, boot=boot,
            )  # fmt: skip
        except lifecycle_actions.Invalid as exc:
            option = exc.field if exc.field == "action" else "--" + exc.field.replace("_", "-")
            raise CommandError(f"{option}: {exc.problem}") from None
        if req.spec.destructive and not yes:
            self._confirm(machine, req)
        actor = Actor.system(f"cli:{getpass.getuser()}")
        try:
            if req.is_operation:
                batch = lifecycle_actions.request_operation([machine], req, actor)
                ids = ", ".join(str(pk) for pk in batch.installs.order_by("pk").values_list("pk", flat=True))
                self.stdout.write(f"{machine.hostname}: {req.spec.label.lower()} requested as batch {batch.pk}"
                                  + (f", install {ids}." if ids else "."))  # fmt: skip
            else:
                machine = lifecycle_actions.mark(machine.pk, req, actor)
                self.stdout.write(f"{machine.hostname} is {machine.status}.")
        except lifecycle_actions.Refused as exc:
            raise CommandError("Refused:\n  " + "\n  ".join(exc.problems)) from None

    def _confirm(self, machine: Machine, req: lifecycle_actions.Request) -> None:
        """A destructive action is typed for, as on the pages; a script says --yes."""
        what = f"{req.spec.label} {machine.hostname}"
        if not sys.stdin.isatty():
            raise CommandError(f"{what} cannot be undone: add --yes, or run it in a terminal and type the hostname.")
        typed = input(f"{what}: {req.spec.help} Type {machine.hostname} to confirm: ").strip()
        if typed != machine.hostname:
            raise CommandError("The hostname did not match; nothing was done.")

    def _show(self, machine: Machine) -> None:
        line = f"{machine.hostname}  {machine.status}"
        if machine.status_changed_at:
            when = timezone.localtime(machine.status_changed_at).strftime("%Y-%m-%d %H:%M %Z")
            line += f"  since {when}"
        self.stdout.write(line)
        if machine.status_reason:
            self.stdout.write(f"reason:    {machine.status_reason}")
        summary = hardware.summary_line(machine)
        if summary:
            model = f"  ({machine.cpu_model})" if machine.cpu_model else ""
            self.stdout.write(f"hardware:  {summary}{model}")
        else:
            self.stdout.write("hardware:  not commissioned yet")
        if machine.protected:
            self.stdout.write("protected: commission, test, deploy and release are refused until unprotected")
        active = Install.objects.filter(machine=machine, state__in=ACTIVE_STATES).first()
        if active:
            self.stdout.write(f"install:   {active.pk} ({active.purpose}, {active.state})")
        elif lifecycle.stale(machine, False):
            self.stdout.write(f"stale:     no install holds it; any operation may take it from {machine.status}")
        allowed = [a.name for a in lifecycle_actions.offered(machine, active is not None)]
        self.stdout.write(f"actions:   {', '.join(allowed) if allowed else f'none from {machine.status}'}")
