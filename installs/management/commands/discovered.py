"""`manage.py discovered`: the Discovered page from a terminal.

manage.py discovered list [--site SLUG] [--state waiting|accepted|discarded|all]
manage.py discovered show ID
manage.py discovered accept ID --hostname web-17 --rack dc1/r01 --position 20 [--height 2]
manage.py discovered discard ID
manage.py discovered inventory ID        (its agent reports its facts again)
manage.py discovered forget ID           (a discarded one: discovered afresh next time)
"""

import getpass
import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat

from audit.service import Actor
from installs import discovery
from installs.discovery_facts import summary
from inventory.editing import find_rack
from inventory.models import DiscoveredMachine


def _entry(pk: int) -> DiscoveredMachine:
    entry = DiscoveredMachine.objects.select_related("site", "machine").filter(pk=pk).first()
    if entry is None:
        raise CommandError(f"There is no discovered machine {pk}; `manage.py discovered list --state all` lists them.")
    return entry


def _size(value) -> str:
    return filesizeformat(value) if value else "?"


class Command(BaseCommand):
    help = "List, show, accept, discard, re-inventory or forget the machines discovery found (the Discovered page)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="The discovered machines, most recently seen first.")
        listing.add_argument("--site", default="", help="Only this site (slug).")
        listing.add_argument("--state", default="waiting", choices=["waiting", "accepted", "discarded", "all"])
        for name, text in (
            ("show", "Every fact of one."),
            ("discard", "Not ours: its agent powers it off, and it is refused if it registers again."),
            ("inventory", "Its agent collects and reports its facts again, at its next poll."),
            ("forget", "Delete a discarded one, so that it is discovered afresh."),
        ):
            sub.add_parser(name, help=text).add_argument("id", type=int)
        accept = sub.add_parser("accept", help="Into inventory (status new) at a rack position.")
        accept.add_argument("id", type=int)
        accept.add_argument("--hostname", required=True)
        accept.add_argument("--rack", required=True, help="site/rack (e.g. dc1/r01) or the rack's id.")
        accept.add_argument("--position", type=int, required=True, help="The lowest U it occupies.")
        accept.add_argument("--height", type=int, default=1, help="Its height in U (default 1).")

    def handle(self, *args, action, **options):
        actor = Actor.system(f"cli:{getpass.getuser()}")
        if action == "list":
            return self.list(options["site"], options["state"])
        entry = _entry(options["id"])
        if action == "show":
            return self.show(entry)
        try:
            if action == "accept":
                placement = discovery.Placement(
                    options["hostname"], find_rack(options["rack"]), options["position"], options["height"]
                )
                machine = discovery.accept(entry.pk, placement, actor)
                self.stdout.write(
                    f"{entry.mac} is {machine.hostname} in inventory (status new) at {machine.rack} "
                    f"U{machine.position_u}; its agent is told to power it off."
                )
            elif action == "discard":
                discovery.discard(entry.pk, actor)
                self.stdout.write(f"{entry.mac} is discarded; its agent is told to power it off.")
            elif action == "inventory":
                discovery.request_inventory(entry.pk, actor)
                self.stdout.write(f"{entry.mac}'s agent will report its facts again at its next poll.")
            elif action == "forget":
                discovery.forget(entry.pk, actor)
                self.stdout.write(f"{entry.mac} is forgotten; it is discovered afresh when it next registers.")
        except ValidationError as exc:
            problems = (
                [f"{field}: {m}" for field, ms in exc.message_dict.items() for m in ms]
                if hasattr(exc, "error_dict")
                else exc.messages
            )
            raise CommandError("Refused:\n  " + "\n  ".join(problems)) from None
        except discovery.DiscoveryRefused as exc:
            raise CommandError(str(exc)) from None

    def list(self, site: str, state: str) -> None:
        entries = DiscoveredMachine.objects.select_related("site", "machine").order_by("-last_seen_at", "-pk")
        if site:
            entries = entries.filter(site__slug=site)
        if state != "all":
            entries = entries.filter(state=state)
        rows = list(entries[:1000])
        if not rows:
            self.stdout.write(f"No discovered machine is {state}." if state != "all" else "No discovered machine.")
            return
        self.stdout.write(f"{'ID':>6}  {'STATE':<9}  {'SITE':<10}  {'BOOT MAC':<17}  {'ADDRESS':<15}  HARDWARE")
        for entry in rows:
            f = summary(entry.facts)
            hardware = f"{f['vendor']} {f['model']} serial {f['serial'] or '?'}, {f['cpus'] or '?'} CPUs, "
            hardware += f"{_size(f['memory_bytes'])}, {len(f['disks'])} disks, {len(f['nics'])} NICs"
            self.stdout.write(
                f"{entry.pk:>6}  {entry.state:<9}  {entry.site.slug:<10}  {entry.mac:<17}  {entry.address:<15}  "
                f"{hardware.strip()}"
            )

    def show(self, entry: DiscoveredMachine) -> None:
        f = summary(entry.facts)
        lines = [
            f"Discovered {entry.mac} ({entry.state}) at {entry.site.slug}, from {entry.address}",
            f"  first seen {entry.first_seen_at:%Y-%m-%d %H:%M:%S}, last seen {entry.last_seen_at:%Y-%m-%d %H:%M:%S}, "
            f"{entry.registrations} registration(s)",
            f"  {f['vendor']} {f['model']}, serial {f['serial'] or '?'}",
            f"  {f['cpus'] or '?'} CPUs {f['cpu_model']}, {_size(f['memory_bytes'])} memory".rstrip(),
            f"  BMC: {f['bmc_address'] or 'not reported'}",
        ]
        lines += [f"  disk {d['name']}: {_size(d['size_bytes'])} {d['model']} serial {d['serial'] or '?'}" for d in
                  f["disks"]]  # fmt: skip
        lines += [f"  NIC {n['name']}: {n['mac']}" + (" (boot)" if n["mac"] == entry.mac else "") for n in f["nics"]]
        if entry.pending_task:
            lines.append(f"  pending task: {entry.pending_task['kind']}")
        if entry.machine:
            lines.append(f"  in inventory as {entry.machine.hostname}")
        if entry.decided_by_label:
            lines.append(f"  {entry.state} by {entry.decided_by_label}")
        lines.append("Facts:")
        lines.append(json.dumps(entry.facts, indent=2, sort_keys=True))
        self.stdout.write("\n".join(lines))
