"""No two machines overlap in a rack, enforced by PostgreSQL itself.

An exclusion constraint over (rack, [position, position + height)) catches what two
concurrent admin edits or CSV imports could slip past Machine.clean(). SQLite (the
embedded demo database) has no equivalent and relies on clean().
"""

from django.db import migrations

UP = """
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE inventory_machine ADD CONSTRAINT machine_rack_no_overlap
    EXCLUDE USING gist (rack_id WITH =, int4range(position_u, position_u + height_u) WITH &&)
    WHERE (rack_id IS NOT NULL);
"""
DOWN = "ALTER TABLE inventory_machine DROP CONSTRAINT IF EXISTS machine_rack_no_overlap;"


def _on_postgres(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("inventory", "0001_initial")]

    operations = [migrations.RunPython(_on_postgres(UP), _on_postgres(DOWN))]
