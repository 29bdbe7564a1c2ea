"""Benchmark the busiest pages: the machine list and the dashboard with 10,000 machines and 1,000
installs in flight (plus history), and the overview of a site of 40 full racks (40 × 42 machines), on real
PostgreSQL. Reports server time (the whole Django request: middleware, queries, template) and the number of
queries per page.

    .venv/bin/python bench/pages.py [--machines 10000 --in-flight 1000 --runs 20]

It uses its own database (provui_bench, recreated unless --reuse) and Redis database 10. Goal: each
page ≤ 100 ms and ≤ 10 queries. The last lines are machine-readable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_env(args) -> None:
    os.environ.update(
        {
            "PROVISIONER_DEV": "1",
            "DEBUG": "0",
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "LOG_LEVEL": "WARNING",
            "PROVISIONER_VAR_DIR": str(ROOT / "var" / "bench"),
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )


def recreate_database(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def populate(machines: int, in_flight: int) -> None:
    import random

    from django.contrib.auth.models import Group

    from accounts.models import User
    from installs.models import ACTIVE_STATES, Alert, Batch, Event, EventKind, Install, InstallState, Step, StepKind
    from installs.plan import build_plan
    from inventory.models import BMC, NIC, Machine, MachineStatus, OSProfile, PowerState, Rack, Site
    from inventory.stock import sync_stock_profiles

    rng = random.Random(8)
    sync_stock_profiles()
    profiles = list(OSProfile.objects.all())
    sites = [
        Site.objects.create(slug=f"dc{n}", name=f"DC {n}", tftp_root=f"/srv/tftp/dc{n}", base_url="http://10.0.0.1")
        for n in range(4)
    ]
    per_rack = 40
    racks = Rack.objects.bulk_create(
        Rack(site=sites[n % len(sites)], name=f"r{n:03d}", height_u=42)
        for n in range((machines + per_rack - 1) // per_rack)
    )
    statuses = [MachineStatus.READY, MachineStatus.DEPLOYED, MachineStatus.NEW, MachineStatus.FAILED]
    vendors = [("Dell", "R650"), ("HPE", "DL360 Gen10"), ("Supermicro", "SYS-1029"), ("Lenovo", "SR630")]
    rows = []
    for n in range(machines):
        vendor, model = vendors[n % 4]
        rows.append(
            Machine(
                hostname=f"node-{n:05d}",
                rack=racks[n // per_rack],
                position_u=1 + n % per_rack,
                height_u=1,
                serial=f"SN{n:08d}",
                vendor=vendor,
                model=model,
                status=statuses[n % 4],
                power_state=rng.choice([PowerState.ON, PowerState.OFF, PowerState.UNKNOWN]),
            )
        )
    made = Machine.objects.bulk_create(rows, batch_size=2000)
    NIC.objects.bulk_create(
        (
            NIC(
                machine=m,
                mac=f"52:54:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                is_pxe=True,
            )
            for i, m in enumerate(made)
        ),
        batch_size=2000,
    )
    BMC.objects.bulk_create(
        (
            BMC(machine=m, driver="fake", address=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", username="admin")
            for i, m in enumerate(made)
        ),
        batch_size=2000,
    )
    batch = Batch.objects.create(name="bench rollout", created_by_label="bench")
    # One real plan shared by every install: the install page reads it, and an empty one is not a plan.
    plan = build_plan(made[0], next(p for p in profiles if p.name == "debian-12-preseed"))
    active = sorted(ACTIVE_STATES)
    installs = []
    for n, m in enumerate(made[: in_flight * 3]):
        live = n < in_flight
        installs.append(
            Install(
                machine=m,
                profile=profiles[n % len(profiles)],
                batch=batch if n % 5 == 0 else None,
                requested_by_label="bench",
                state=active[n % len(active)] if live else rng.choice([InstallState.SUCCEEDED, InstallState.FAILED]),
                progress=rng.randrange(100),
                current_step="Installer running",
                failure_reason="" if live else "InstallerFailed",
                failure_message="" if live else "The installer reported a failure.",
                plan=plan,
                token_nonce=f"{n:032x}",
                boot_token_hash=f"{n:064x}",
            )
        )
    installs = Install.objects.bulk_create(installs, batch_size=2000)
    Step.objects.bulk_create(
        (Step(install=i, order=o, kind=StepKind.CHECK_BMC) for i in installs[:in_flight] for o in range(10)),
        batch_size=5000,
    )
    Event.objects.bulk_create(
        (Event(install=i, kind=EventKind.PROGRESS, message="progress") for i in installs for _ in range(5)),
        batch_size=5000,
    )
    Alert.objects.bulk_create(
        Alert(install=i, machine_id=i.machine_id, reason="InstallerFailed", message="disk full")
        for i in installs[in_flight : in_flight + 50]
    )
    populate_overview_site(OVERVIEW_RACKS, OVERVIEW_PER_RACK, profiles[0])
    viewer = User.objects.create_user("bench-viewer", password="x" * 16)
    viewer.groups.add(Group.objects.get_or_create(name="technician")[0])


OVERVIEW_RACKS = 40
OVERVIEW_PER_RACK = 42
OVERVIEW_URL = "/sites/hall/"


def populate_overview_site(racks: int, per_rack: int, profile) -> None:
    """The site overview's worst case: a hall of full 42U racks, every machine 1U, with hardware facts, a mix of
    statuses and power states, and one install in ten in flight."""
    from installs.models import ACTIVE_STATES, Install
    from inventory.models import BMC, Machine, MachineStatus, PowerState, Rack, Site

    site = Site.objects.create(slug="hall", name="Hall", tftp_root="/srv/tftp/hall", base_url="http://10.0.0.1")
    rows = Rack.objects.bulk_create(Rack(site=site, name=f"h{n:02d}", height_u=per_rack) for n in range(racks))
    statuses = list(MachineStatus)
    powers = [PowerState.ON, PowerState.OFF, PowerState.UNKNOWN]
    made = Machine.objects.bulk_create(
        (
            Machine(
                hostname=f"hall-{r:02d}-{u:02d}",
                rack=rack,
                position_u=u,
                status=statuses[(r + u) % len(statuses)],
                power_state=powers[u % 3],
                cpu_cores=64,
                memory_bytes=512 * 2**30,
                disk_count=4,
                nvme_count=2,
                ssd_count=2,
                nic_max_speed_mbps=25000,
            )
            for r, rack in enumerate(rows)
            for u in range(1, per_rack + 1)
        ),
        batch_size=2000,
    )
    BMC.objects.bulk_create(
        BMC(machine=m, driver="fake", address=f"10.200.{i >> 8 & 255}.{i & 255}", username="admin", reachable=i % 7 > 0)
        for i, m in enumerate(made)
    )
    active = sorted(ACTIVE_STATES)
    Install.objects.bulk_create(
        Install(
            machine=m,
            profile=profile,
            requested_by_label="bench",
            state=active[n % len(active)],
            plan={},
            token_nonce=f"hall{n:028x}",
            boot_token_hash=f"{n + 10**9:064x}",
        )
        for n, m in enumerate(made[::10])
    )


def measure(client, url: str, runs: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        assert client.get(url).status_code == 200, url
    times = []
    queries = 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = client.get(url)
            if getattr(response, "streaming", False):
                b"".join(response.streaming_content)
            times.append((time.perf_counter() - start) * 1000)
        queries = len(captured)
    times.sort()
    return {
        "url": url,
        "median_ms": statistics.median(times),
        "p95_ms": times[max(0, int(len(times) * 0.95) - 1)],
        "queries": queries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=10000)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="Keep the database of the last run.")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/provui_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()
    setup_env(args)
    if not args.reuse:
        recreate_database(args.database_url)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import User

    settings.ALLOWED_HOSTS = ["testserver"]
    if not args.reuse:
        call_command("migrate", verbosity=0)
        start = time.perf_counter()
        populate(args.machines, args.in_flight)
        took = time.perf_counter() - start
        print(f"populated {args.machines} machines, {args.in_flight} installs in flight in {took:.1f} s")
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    client = Client()
    client.force_login(User.objects.get(username="bench-viewer"))
    pages = [
        "/",
        "/machines/",
        "/machines/?per_page=250",
        "/machines/?sort=-profile",
        "/machines/?q=52:54:00:00:1f",
        "/machines/?q=node-0999",
        "/machines/?status=deployed&vendor=Dell&profile=debian-12-preseed",
        "/machines/?page=150",
        "/racks/",
        "/installs/?state=active",
        "/installs/1/",
        "/machines/node-00001/",
        OVERVIEW_URL,
        OVERVIEW_URL + "?partial=1",
    ]
    results = [measure(client, url, args.runs) for url in pages]
    print(f"{'page':60} {'median ms':>10} {'p95 ms':>8} {'queries':>8}")
    for r in results:
        print(f"{r['url']:60} {r['median_ms']:10.1f} {r['p95_ms']:8.1f} {r['queries']:8d}")
    worst = max(results[:2], key=lambda r: r["p95_ms"])
    print(
        f"dashboard_p95_ms={results[0]['p95_ms']:.1f} dashboard_queries={results[0]['queries']} "
        f"machines_p95_ms={results[1]['p95_ms']:.1f} machines_queries={results[1]['queries']} "
        f"goal_met={worst['p95_ms'] <= 100 and max(r['queries'] for r in results[:2]) <= 10}"
    )
    overview = results[-2]
    print(
        f"site_overview_racks={OVERVIEW_RACKS} site_overview_machines={OVERVIEW_RACKS * OVERVIEW_PER_RACK} "
        f"site_overview_p95_ms={overview['p95_ms']:.1f} site_overview_median_ms={overview['median_ms']:.1f} "
        f"site_overview_queries={overview['queries']} site_overview_partial_p95_ms={results[-1]['p95_ms']:.1f} "
        f"site_overview_goal_met={overview['p95_ms'] <= 100}"
    )


if __name__ == "__main__":
    main()
