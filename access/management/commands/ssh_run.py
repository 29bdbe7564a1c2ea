import argparse
import getpass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from audit.service import Actor
from inventory.models import Machine

from ...service import run_command


class Command(BaseCommand):
    help = (
        "Run a command on machines through their site's jump hosts, audited per machine: "
        "manage.py ssh_run web01 web02 -- uptime. (Django command names use underscores: ssh_run, not ssh-run.) "
        "Exits 1 when any machine did not run the command to exit status 0."
    )

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=None, help="Seconds each command may run.")
        parser.add_argument("--max-output", type=int, default=None, help="Bytes of output kept per machine.")
        parser.add_argument(
            "--as-user",
            metavar="USERNAME",
            help="Record the dashboard user this is done for (who must be allowed to run commands); "
            "without it the audit log names the operating-system account.",
        )
        # One list split at "--" by hand: argparse would swallow the separator between two positionals.
        parser.add_argument("words", nargs=argparse.REMAINDER, metavar="HOSTNAME ... -- COMMAND")

    def handle(self, *args, words, timeout, max_output, as_user, **options):
        if "--" not in words:
            raise CommandError("Give the hostnames, then --, then the command: ssh_run web01 web02 -- uptime")
        split = words.index("--")
        hostnames, command = words[:split], " ".join(words[split + 1 :])
        if not hostnames or not command.strip():
            raise CommandError("Give at least one hostname before -- and a command after it.")
        machines = dict(Machine.objects.filter(hostname__in=hostnames).values_list("hostname", "pk"))
        unknown = [h for h in hostnames if h not in machines]
        if unknown:
            raise CommandError(f"Unknown machine(s): {', '.join(unknown)}")
        if as_user:
            user = get_user_model().objects.filter(username=as_user).first()
            if user is None:
                raise CommandError(f"No user {as_user!r}.")
            actor = Actor.for_user(user)
        else:
            actor = Actor.system(f"manage.py ssh_run ({getpass.getuser()})")
        try:
            results = run_command(
                [machines[h] for h in hostnames],
                command,
                actor=actor,
                timeout_s=timeout or settings.SSH_COMMAND_TIMEOUT_S,
                max_output=max_output or settings.SSH_MAX_OUTPUT_BYTES,
            )
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        failed = 0
        for r in results:
            status = f"exit {r.exit_status}" if r.exit_status is not None else r.reason
            self.stdout.write(
                f"==> {r.hostname}: {status} ({r.duration_s:.1f} s){' ' + r.message if r.message else ''}"
            )
            if r.output:
                self.stdout.write(r.output, ending="" if r.output.endswith("\n") else "\n")
            if r.truncated:
                self.stdout.write("[output truncated]")
            failed += not r.ok
        if failed:
            raise CommandError(
                f"{failed} of {len(results)} machine(s) did not run the command to exit 0.", returncode=1
            )
