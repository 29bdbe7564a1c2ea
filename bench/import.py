"""Benchmark the bulk machine import's preview: a 5,000-row CSV (every machine with two NICs and a BMC) against an
inventory already holding half of them, on real PostgreSQL. Reports the preview time (reading, every field check,
the checks against inventory and the other rows) and, with --apply, the import itself.

    .venv/bin/python bench/import.py [--rows 5000] [--apply]

It uses its own database (provimport_bench, recreated each run) and Redis database 10. Goal: the preview of
5,000 rows in ≤ 10 s. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pages import recreate_database, setup_env  # noqa: E402

PER_RACK = 40


def mac(n: int, port: int) -> str:
    return f"52:54:{port:02x}:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}"


def csv_rows(rows: int) -> str:
    lines = ["site,rack,hostname,position_u,height_u,serial,vendor,model,nics,bmc_driver,bmc_address,bmc_username,"
             "bmc_password"]  # fmt: skip
    for n in range(rows):
        nics = f"*eno1={mac(n, 1)}@10.{n >> 8 & 255}.{n & 255}.10/16; eno2={mac(n, 2)}"
        lines.append(
            f"dc{n % 4},r{n // PER_RACK:03d},node-{n:05d},{1 + n % PER_RACK},1,SN{n:08d},Dell,R650,{nics},ipmi,"
            f"10.200.{n >> 8 & 255}.{n & 255},admin,bench-password-{n}"
        )
    return "\n".join(lines) + "\n"


def populate(rows: int) -> None:
    """Sites, racks and the first half of the file's machines already in inventory (so half the rows change)."""
    from audit.service import Actor
    from inventory import importing
    from inventory.models import Site

    for n in range(4):
        Site.objects.create(slug=f"dc{n}", name=f"DC {n}", tftp_root=f"/srv/tftp/dc{n}", base_url="http://10.0.0.1")
    half = csv_rows(rows // 2).replace(",Dell,", ",Dell (old),")
    importing.apply(half, actor=Actor.system("bench"), create_racks=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--apply", action="store_true", help="Also time the import itself.")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/provimport_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()
    setup_env(args)
    recreate_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    from audit.service import Actor
    from inventory import importing

    call_command("migrate", verbosity=0)
    populate(args.rows)
    text = csv_rows(args.rows)
    start = time.perf_counter()
    result = importing.plan(text, create_racks=True)
    took = time.perf_counter() - start
    assert result.ok, result.problems[:5]
    print(f"preview of {args.rows} rows: {result.count('create')} to create, {result.count('change')} to change")
    applied = ""
    if args.apply:
        start = time.perf_counter()
        importing.apply(text, actor=Actor.system("bench"), create_racks=True)
        applied = f" apply_s={time.perf_counter() - start:.2f}"
    print(f"rows={args.rows} preview_s={took:.2f}{applied} goal_s=10 {'OK' if took <= 10 else 'SLOW'}")


if __name__ == "__main__":
    main()
