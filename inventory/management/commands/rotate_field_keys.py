from django.core.management.base import BaseCommand, CommandError

from audit.service import Actor
from inventory import crypto


def _summary(counts) -> str:
    return ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (BMC passwords, jump host and site login SSH keys: every encrypted "
        "field) under the newest key, the first in PROVISIONER_FIELD_KEYS, all or nothing. Run it after "
        "prepending a new key; then, with the old key removed, --check proves every secret still decrypts."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing: decrypt every stored secret with the configured keys and fail if any does not.",
        )

    def handle(self, *args, check, **options):
        try:
            counts = crypto.check_all() if check else crypto.rotate_all(Actor.system("rotate_field_keys"))
        except crypto.UnreadableSecrets as exc:
            unreadable = exc.args[0]
            listed = "\n  ".join(unreadable[:20]) + ("\n  …" if len(unreadable) > 20 else "")
            raise CommandError(
                f"{len(unreadable)} stored secret(s) cannot be decrypted with any key in PROVISIONER_FIELD_KEYS"
                f"{'' if check else '; nothing was changed'}:\n  {listed}\n"
                "Add back the key they were written with (or set those secrets again)."
            ) from None
        if check:
            self.stdout.write(f"All {sum(counts.values())} stored secret(s) decrypt ({_summary(counts)}).")
            return
        total = sum(counts.values())
        self.stdout.write(f"Re-encrypted {total} stored secret(s) under the newest key ({_summary(counts)}).")
