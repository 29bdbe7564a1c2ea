from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.service import Actor, record
from inventory import crypto

from ...models import JumpHost, SiteLogin


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored SSH private key (jump hosts, site logins) under the newest key in "
        "PROVISIONER_FIELD_KEYS. Run it together with rotate_field_keys (which covers BMC passwords) after "
        "prepending a new key; then the old key can be removed."
    )

    def handle(self, *args, **options):
        rotated = 0
        failed = []
        with transaction.atomic():
            for model in (JumpHost, SiteLogin):
                for row in (
                    model.objects.select_related("site")
                    .select_for_update(of=("self",))
                    .exclude(private_key_ciphertext="")
                ):
                    what = f"SSH key of {model._meta.verbose_name} {row.site.slug}"
                    try:
                        row.private_key_ciphertext = crypto.rotate(row.private_key_ciphertext, what=what)
                    except crypto.FieldDecryptError:
                        failed.append(what)
                        continue
                    row.save(update_fields=["private_key_ciphertext"])
                    rotated += 1
            if failed:
                # All or nothing, as rotate_field_keys: a half-rotated table would need both keys forever.
                transaction.set_rollback(True)
            else:
                record(Actor.system("rotate_ssh_keys"), "ssh.keys_rotated", None, {"count": rotated})
        if failed:
            raise CommandError(
                f"{len(failed)} SSH key(s) cannot be decrypted with any configured key ({', '.join(failed[:10])}); "
                "nothing was changed. Add back the key they were written with, or set those keys again."
            )
        self.stdout.write(f"Re-encrypted {rotated} SSH private key(s) under the newest key.")
