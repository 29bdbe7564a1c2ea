"""The install token becomes a one-shot boot credential, exchanged at first use for an agent token or
an installer callback token that never appears in a boot file (installs/tokens.py)."""

import hashlib

from django.db import migrations, models
from django.utils.crypto import salted_hmac


def callback_hashes(apps, schema_editor):
    # The callback token of an install created before this migration, derived as installs/tokens.py does.
    Install = apps.get_model("installs", "Install")
    for install in Install.objects.filter(callback_token_hash__isnull=True).only("pk", "token_nonce").iterator():
        token = salted_hmac("provisioner.installs.callback-token", install.token_nonce, algorithm="sha256").hexdigest()
        Install.objects.filter(pk=install.pk).update(callback_token_hash=hashlib.sha256(token.encode()).hexdigest())


class Migration(migrations.Migration):
    dependencies = [
        ("installs", "0002_verify_ssh_step"),
    ]

    operations = [
        migrations.RenameField(model_name="install", old_name="token_hash", new_name="boot_token_hash"),
        migrations.AddField(
            model_name="install",
            name="boot_token_spent_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="install",
            name="boot_token_spent_from",
            field=models.GenericIPAddressField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="install",
            name="agent_token_hash",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True, unique=True),
        ),
        migrations.AddField(
            model_name="install",
            name="agent_key_hash",
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="install",
            name="agent_token_used_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="install",
            name="callback_token_hash",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True, unique=True),
        ),
        migrations.RunPython(callback_hashes, migrations.RunPython.noop, elidable=True),
    ]
