"""Half-depth machines: a machine's depth (full, or half at the front or the rear). Two half-depth machines on
opposite faces may share rack units, so PostgreSQL's one no-overlap constraint (migration 0002) becomes one per
face: the machines that take the front (full depth or front half) never overlap, nor those that take the rear."""

from django.db import migrations, models

UP = """
ALTER TABLE inventory_machine DROP CONSTRAINT IF EXISTS machine_rack_no_overlap;
ALTER TABLE inventory_machine ADD CONSTRAINT machine_rack_front_no_overlap
    EXCLUDE USING gist (rack_id WITH =, int4range(position_u, position_u + height_u) WITH &&)
    WHERE (rack_id IS NOT NULL AND depth <> 'rear');
ALTER TABLE inventory_machine ADD CONSTRAINT machine_rack_rear_no_overlap
    EXCLUDE USING gist (rack_id WITH =, int4range(position_u, position_u + height_u) WITH &&)
    WHERE (rack_id IS NOT NULL AND depth <> 'front');
"""
DOWN = """
ALTER TABLE inventory_machine DROP CONSTRAINT IF EXISTS machine_rack_front_no_overlap;
ALTER TABLE inventory_machine DROP CONSTRAINT IF EXISTS machine_rack_rear_no_overlap;
ALTER TABLE inventory_machine ADD CONSTRAINT machine_rack_no_overlap
    EXCLUDE USING gist (rack_id WITH =, int4range(position_u, position_u + height_u) WITH &&)
    WHERE (rack_id IS NOT NULL);
"""


def _on_postgres(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("inventory", "0011_tags")]

    operations = [
        migrations.AddField(
            model_name="machine",
            name="depth",
            field=models.CharField(
                choices=[("full", "full depth"), ("front", "half depth, front"), ("rear", "half depth, rear")],
                default="full",
                help_text="A half-depth machine takes its rack units on one face only; the site overview draws the rear.",
                max_length=5,
            ),
        ),
        migrations.RunPython(_on_postgres(UP), _on_postgres(DOWN)),
    ]
