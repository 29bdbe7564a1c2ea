from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.service import Actor, record
from inventory import crypto
from inventory.models import BMC


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored BMC password under the newest key (the first in PROVISIONER_FIELD_KEYS). "
        "Run after prepending a new key; then the old key can be removed."
    )

    def handle(self, *args, **options):
        rotated = 0
        failed = []
        with transaction.atomic():
            for bmc in (
                BMC.objects.select_related("machine").select_for_update(of=("self",)).exclude(password_ciphertext="")
            ):
                try:
                    bmc.password_ciphertext = crypto.rotate(
                        bmc.password_ciphertext, what=f"BMC password of {bmc.machine.hostname}"
                    )
                except crypto.FieldDecryptError:
                    failed.append(bmc.machine.hostname)
                    continue
                bmc.save(update_fields=["password_ciphertext"])
                rotated += 1
            if failed:
                # All or nothing: a half-rotated table would need both keys forever.
                transaction.set_rollback(True)
            else:
                record(Actor.system("rotate_field_keys"), "inventory.bmc.keys_rotated", None, {"count": rotated})
        if failed:
            raise CommandError(
                f"{len(failed)} BMC password(s) cannot be decrypted with any configured key "
                f"({', '.join(sorted(failed)[:10])}{'…' if len(failed) > 10 else ''}); nothing was changed. "
                "Add back the key they were written with, or set those passwords again."
            )
        self.stdout.write(f"Re-encrypted {rotated} BMC password(s) under the newest key.")
