from django.db import migrations, models
from django.db.models import F

TERMINAL = ["succeeded", "failed", "cancelled"]


def installs_ended_before_were_cleaned(apps, schema_editor):
    # Their cleanup ran (or was lost) long ago: the sweeper must not clean a machine's history now,
    # when its boot config and boot device may belong to a later install.
    Install = apps.get_model("installs", "Install")
    Install.objects.filter(state__in=TERMINAL).update(cleaned_at=F("finished_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("installs", "0004_periodic_run"),
    ]

    operations = [
        migrations.AddField(
            model_name="install",
            name="cleaned_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(installs_ended_before_were_cleaned, migrations.RunPython.noop),
    ]
