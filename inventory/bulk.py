"""One UPDATE for many rows, each with its own values: what a sweep of a thousand machines writes.

Django's ``bulk_update`` builds a CASE expression per column with one WHEN per row, and compiling that costs
seconds of CPU for a thousand rows; ``UPDATE ... FROM (VALUES ...)`` costs milliseconds. Plain SQL that
PostgreSQL and SQLite (3.33 and later) both take: the VALUES columns are named column1, column2, ... in both.
"""

from __future__ import annotations

from django.db import connection

#: Rows per statement: well inside both databases' limits on parameters.
BATCH = 500


def update_rows(model, rows: list[tuple], types: tuple[str, ...], assignments: str, params: tuple = ()) -> None:
    """``UPDATE <table> SET <assignments> FROM (VALUES <rows>) AS v WHERE <pk> = v.column1``.

    Each row starts with the primary key; ``types`` gives an SQL type per row value (the key's included), so
    that a column of NULLs still has one. ``assignments`` refers to the other values as v.column2, ... and may
    hold placeholders of its own, filled from ``params``. Column names in it are the model's db columns.
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    table, key = quote(model._meta.db_table), quote(model._meta.pk.column)
    placeholder = "(" + ", ".join(f"CAST(%s AS {sql_type})" for sql_type in types) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            values = ", ".join([placeholder] * len(chunk))
            sql = f"UPDATE {table} SET {assignments} FROM (VALUES {values}) AS v WHERE {table}.{key} = v.column1"
            cursor.execute(sql, [*params, *(value for row in chunk for value in row)])


def timestamp(value):
    """A datetime as the database driver takes it in raw SQL (SQLite stores text)."""
    return connection.ops.adapt_datetimefield_value(value)
