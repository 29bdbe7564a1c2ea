from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from audit.service import Actor, record
from inventory.models import BMC, NIC, BmcDriver, Machine, MachineStatus, Rack, Site
from inventory.stock import sync_stock_profiles

RACKS = ("r01", "r02")
MACHINES_PER_RACK = 4
DEMO_BMC_PASSWORD = "demo-bmc-password"  # the fake driver's; never a real machine's


class Command(BaseCommand):
    help = "Load a small demo site (2 racks, 8 machines with fake BMCs) and the stock OS profiles. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="URL the demo machines reach us at.")

    @transaction.atomic
    def handle(self, *args, base_url, **options):
        tftp_root = settings.VAR_DIR / "tftp" / "demo"
        tftp_root.mkdir(parents=True, exist_ok=True)
        site, _ = Site.objects.update_or_create(
            slug="demo", defaults={"name": "Demo site", "tftp_root": str(tftp_root), "base_url": base_url}
        )
        created = 0
        for r, rack_name in enumerate(RACKS, start=1):
            rack, _ = Rack.objects.get_or_create(site=site, name=rack_name, defaults={"height_u": 42})
            for m in range(1, MACHINES_PER_RACK + 1):
                hostname = f"demo-{rack_name}-{m:02d}"
                machine, was_created = Machine.objects.get_or_create(
                    hostname=hostname,
                    defaults={
                        "rack": rack,
                        "position_u": 1 + (m - 1) * 2,
                        "height_u": 2 if m % 2 else 1,
                        "serial": f"DEMO{r:02d}{m:04d}",
                        "vendor": "Dell" if m % 2 else "HPE",
                        "model": "PowerEdge R650" if m % 2 else "ProLiant DL360 Gen10",
                        "status": MachineStatus.READY,
                    },
                )
                created += was_created
                NIC.objects.get_or_create(
                    mac=f"52:54:00:00:{r:02x}:{m:02x}", defaults={"machine": machine, "name": "port 1", "is_pxe": True}
                )
                NIC.objects.get_or_create(
                    mac=f"52:54:00:01:{r:02x}:{m:02x}", defaults={"machine": machine, "name": "port 2"}
                )
                bmc, bmc_created = BMC.objects.get_or_create(
                    machine=machine,
                    defaults={"driver": BmcDriver.FAKE, "address": f"127.0.{r}.{m}", "port": 623, "username": "admin"},
                )
                if bmc_created or not bmc.has_password:
                    bmc.set_password(DEMO_BMC_PASSWORD)
                    bmc.save(update_fields=["password_ciphertext"])
        profiles = sync_stock_profiles()
        record(
            Actor.system("load_demo"),
            "inventory.demo_loaded",
            site,
            {"machines_created": created, "profiles": [p.name for p in profiles]},
        )
        self.stdout.write(
            f"Demo site '{site.slug}': {Machine.objects.filter(rack__site=site).count()} machines "
            f"({created} new), {len(profiles)} stock profiles."
        )
