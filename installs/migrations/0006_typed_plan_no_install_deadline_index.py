from django.db import migrations

import installs.plan


class Migration(migrations.Migration):
    """The plan is read as a typed Plan (same JSON, no change in the database); the install's
    (state, deadline_at) index goes: the sweeper reads the steps' deadlines, nothing queries the install's."""

    dependencies = [
        ("installs", "0005_install_cleaned_at"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="install",
            name="install_state_deadline_idx",
        ),
        migrations.AlterField(
            model_name="install",
            name="plan",
            field=installs.plan.PlanField(),
        ),
    ]
