import json

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from console import hardware
from console.filters import DISK_TYPES, SORTS, MachineQuery, machine_queryset


class Command(BaseCommand):
    help = (
        "List machines with the machine list's filters, the hardware ones and tags included (e.g. manage.py "
        "machines --status ready --memory-gib-min 256 --disk-type nvme --nic-speed-min 25000 --tag gpu)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--search", default="", help="Hostname, MAC, serial or BMC address contains.")
        parser.add_argument("--site", default="")
        parser.add_argument("--rack", default="", help="A rack's name or id.")
        parser.add_argument("--status", default="")
        parser.add_argument("--vendor", default="")
        parser.add_argument("--memory-gib-min", default="", help="Memory at least this many GiB.")
        parser.add_argument("--cpu-model", default="", help="The CPU model contains this.")
        parser.add_argument("--cores-min", default="", help="At least this many CPU cores.")
        parser.add_argument("--disks-min", default="", help="At least this many disks.")
        parser.add_argument("--disk-type", choices=list(DISK_TYPES), default="", help="At least one disk of this type.")
        parser.add_argument("--nic-speed-min", default="", help="The fastest NIC at least this fast, in Mb/s.")
        parser.add_argument("--switch", default="", help="Cabled to a switch whose LLDP name contains this.")
        parser.add_argument("--switch-port", default="", help="Cabled to this switch port (LLDP port id).")
        parser.add_argument(
            "--tag", action="append", default=[], help="Has this tag; give it several times for all of them."
        )
        parser.add_argument("--sort", default="hostname", choices=[p + k for k in SORTS for p in ("", "-")])
        parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON array, for scripts.")

    def handle(self, *args, search, as_json, sort, tag, **options):
        params = {"q": search, "sort": sort, "tag": tag, **{k: v for k, v in options.items() if isinstance(v, str)}}
        query = MachineQuery.from_params(params)
        if problems := query.problems():
            raise CommandError(
                "\n".join(f"--{field.replace('_', '-')}: {problem}" for field, problem in problems.items())
            )
        machines = machine_queryset(query).iterator(chunk_size=2000)
        if as_json:
            self._json(machines)
        else:
            self._table(machines)

    def _json(self, machines) -> None:
        rows = [
            {
                "hostname": m.hostname,
                "site": m.rack.site.slug if m.rack else None,
                "rack": m.rack.name if m.rack else None,
                "position_u": m.position_u,
                "status": m.status,
                "status_reason": m.status_reason,
                "status_changed_at": m.status_changed_at,
                "protected": m.protected,
                "hardware": hardware.summary(m),
                "tags": [t.name for t in m.tags.all()],
            }
            for m in machines
        ]
        self.stdout.write(json.dumps(rows, cls=DjangoJSONEncoder, indent=2))

    def _table(self, machines) -> None:
        rows = [("HOSTNAME", "SITE/RACK", "STATUS", "TAGS", "HARDWARE", "CPU", "REASON")]
        for m in machines:
            where = f"{m.rack.site.slug}/{m.rack.name}" if m.rack else "-"
            tags = ",".join(t.name for t in m.tags.all()) or "-"
            rows.append((m.hostname, where, m.status, tags, hardware.summary_line(m) or "-", m.cpu_model or "-",
                         m.status_reason))  # fmt: skip
        if len(rows) == 1:
            self.stdout.write("No machine matches.")
            return
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
