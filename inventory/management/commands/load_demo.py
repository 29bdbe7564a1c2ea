import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.service import Actor, record
from inventory.models import (
    BMC,
    NIC,
    BmcDriver,
    Depth,
    Machine,
    MachineStatus,
    OSProfile,
    Pdu,
    PduOutlet,
    Rack,
    Site,
    Tag,
)
from inventory.signals import lab_loaded
from inventory.stock import sync_stock_profiles

RACKS = ("r01", "r02")
MACHINES_PER_RACK = 4
DEMO_BMC_PASSWORD = "demo-bmc-password"  # the fake driver's; never a real machine's
# Tags the demo and the lab give their machines, so the machine list shows some: (name, colour, description).
DEMO_TAGS = (
    ("gpu", "green", "Has GPUs: for the ML batch."),
    ("storage", "blue", "Many disks: a storage node (Ceph OSD)."),
)


def demo_tags(index: int) -> list[Tag]:
    """The demo tags of the ``index``-th machine (from 1): every fourth has GPUs, every third is storage."""
    tags = {name: Tag.objects.update_or_create(name=name, defaults={"colour": c, "description": d})[0]
            for name, c, d in DEMO_TAGS}  # fmt: skip
    return [tags["gpu"]] * (index % 4 == 1) + [tags["storage"]] * (index % 3 == 0)


class Command(BaseCommand):
    help = "Load a small demo site (2 racks, 8 machines with fake BMCs) and the stock OS profiles. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="URL the demo machines reach us at.")
        parser.add_argument(
            "--lab-inventory",
            help="Load the machines of a running simulated datacentre (python -m provisioner.lab) from its "
            "inventory file instead: real IPMI BMCs on loopback, machines that boot (docs/lab.md).",
        )

    @transaction.atomic
    def handle(self, *args, base_url, lab_inventory=None, **options):
        if lab_inventory:
            return self.load_lab(Path(lab_inventory))
        tftp_root = settings.VAR_DIR / "tftp" / "demo"
        tftp_root.mkdir(parents=True, exist_ok=True)
        site, _ = Site.objects.update_or_create(
            slug="demo", defaults={"name": "Demo site", "tftp_root": str(tftp_root), "base_url": base_url}
        )
        if not site.bmc_username:  # the last rack's BMCs log in with the site's default credentials
            site.bmc_username = "admin"
            site.set_bmc_password(DEMO_BMC_PASSWORD)
            site.save(update_fields=["bmc_username", "bmc_password_ciphertext"])
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
                        # The last is a half-depth box at the rear: the site overview draws both faces.
                        "depth": Depth.REAR if m == MACHINES_PER_RACK else Depth.FULL,
                        "serial": f"DEMO{r:02d}{m:04d}",
                        "vendor": "Dell" if m % 2 else "HPE",
                        "model": "PowerEdge R650" if m % 2 else "ProLiant DL360 Gen10",
                        "status": MachineStatus.READY,
                    },
                )
                created += was_created
                machine.tags.add(*demo_tags((r - 1) * MACHINES_PER_RACK + m))
                NIC.objects.get_or_create(  # a loopback address: the host ping answers
                    mac=f"52:54:00:00:{r:02x}:{m:02x}",
                    defaults={
                        "machine": machine,
                        "name": "port 1",
                        "is_pxe": True,
                        "ip": f"127.1.{r}.{m}",
                        "prefix_len": 8,
                    },
                )
                NIC.objects.get_or_create(
                    mac=f"52:54:00:01:{r:02x}:{m:02x}", defaults={"machine": machine, "name": "port 2"}
                )
                site_credentials = r == len(RACKS)
                bmc, bmc_created = BMC.objects.get_or_create(
                    machine=machine,
                    defaults={
                        "driver": BmcDriver.FAKE,
                        "address": f"127.0.{r}.{m}",
                        "port": 623,
                        "username": "" if site_credentials else "admin",
                    },
                )
                if not site_credentials and (bmc_created or not bmc.has_password):
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

    def load_lab(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read the lab inventory {path}: {exc}") from None
        if data.get("version") != 1:
            raise CommandError(f"{path}: unsupported lab inventory version {data.get('version')!r}")
        s = data["site"]
        site, _ = Site.objects.update_or_create(
            slug=s["slug"], defaults={"name": s["name"], "tftp_root": s["tftp_root"], "base_url": s["base_url"]}
        )
        if s.get("bmc_username") and s.get("bmc_password"):  # what the lab's undiscovered machines' BMCs take
            if site.bmc_username != s["bmc_username"] or site.get_bmc_password() != s["bmc_password"]:
                site.bmc_username = s["bmc_username"]
                site.set_bmc_password(s["bmc_password"])
                site.save(update_fields=["bmc_username", "bmc_password_ciphertext"])
        racks = {}
        for r in data["racks"]:
            racks[r["name"]], _ = Rack.objects.update_or_create(
                site=site, name=r["name"], defaults={"height_u": r["height_u"]}
            )
        pdus = {}
        for p in data.get("pdus", []):
            pdu, _ = Pdu.objects.update_or_create(
                site=site,
                name=p["name"],
                defaults={
                    "address": p["address"],
                    "port": p["port"],
                    "profile": p["profile"],
                    "outlet_count": p["outlet_count"],
                    "snmp_version": "v2c",
                },
            )
            if not pdu.has_community or pdu.get_community() != p["community"]:
                pdu.set_community(p["community"])
                pdu.save(update_fields=["community_ciphertext"])
            pdus[p["name"]] = pdu
        created = 0
        for index, m in enumerate(data["machines"], start=1):
            fields = {
                "rack": racks[m["rack"]],
                "position_u": m["position_u"],
                "height_u": m.get("height_u", 1),
                "depth": m.get("depth", Depth.FULL),
                "serial": m.get("serial", ""),
                "vendor": m.get("vendor", ""),
                "model": m.get("model", ""),
            }
            machine, was_created = Machine.objects.update_or_create(
                hostname=m["hostname"], defaults=fields, create_defaults={**fields, "status": MachineStatus.READY}
            )
            created += was_created
            machine.tags.add(*demo_tags(index))
            for nic in m["nics"]:
                NIC.objects.update_or_create(
                    mac=nic["mac"],
                    defaults={
                        "machine": machine, "name": nic.get("name", ""), "is_pxe": nic["pxe"],
                        "ip": nic.get("ip"), "prefix_len": nic.get("prefix") if nic.get("ip") else None,
                    },
                )  # fmt: skip
            b = m["bmc"]
            bmc, _ = BMC.objects.update_or_create(
                machine=machine,
                defaults={"driver": b["driver"], "address": b["address"], "port": b["port"], "username": b["username"]},
            )
            if not bmc.has_password or bmc.get_password() != b["password"]:
                bmc.set_password(b["password"])
                bmc.save(update_fields=["password_ciphertext"])
            for o in m.get("pdu_outlets", []):
                PduOutlet.objects.filter(pdu=pdus[o["pdu"]], outlet=o["outlet"]).exclude(machine=machine).delete()
                PduOutlet.objects.get_or_create(machine=machine, pdu=pdus[o["pdu"]], outlet=o["outlet"])
        profiles = sync_stock_profiles()
        image = data["image"]
        stock_image = OSProfile.objects.get(name="memory-os-image")
        demo, _ = OSProfile.objects.update_or_create(
            name="lab-demo-image",
            defaults={
                "description": "The lab's demo disk image, written by the agent in the memory OS",
                "method": stock_image.method,
                "kernel": stock_image.kernel,
                "initrd": stock_image.initrd,
                "kernel_args": stock_image.kernel_args,
                "image_url": image["url"],
                "image_sha256": image["sha256"],
            },
        )
        discovering = self.discover(site, s, demo)
        # The jump host and the machines' login are the access app's: it takes them from the inventory.
        answers = lab_loaded.send(sender=Site, site=site, inventory=data)
        jump = next((str(answer) for _, answer in answers if answer), "")
        record(
            Actor.system("load_demo"),
            "inventory.lab_loaded",
            site,
            {
                "machines_created": created,
                "profiles": [p.name for p in profiles] + [demo.name],
                "discovery": discovering,
                "jump_host": jump,
            },
        )
        unknown = len(data.get("unknown_machines", []))
        self.stdout.write(
            f"Lab site '{site.slug}': {len(data['machines'])} machines ({created} new), "
            f"{len(profiles) + 1} profiles (image installs: {demo.name})"
            + (f"; discovery on, {unknown} machines not in inventory will register." if discovering else ".")
        )

    @staticmethod
    def discover(site: Site, s: dict, memory_os: OSProfile) -> bool:
        """The lab's site discovers its undiscovered machines: the demo image's kernel is the memory OS. Saving the
        site queues the reconcile that makes the TFTP root's defaults discover (installs/discovery_boot.py)."""
        if not s.get("discovery"):
            return False
        site.discovery, site.memory_os = True, memory_os
        site.provisioning_networks = s.get("provisioning_networks") or "127.0.0.0/8"
        site.full_clean()
        site.save()
        return True
