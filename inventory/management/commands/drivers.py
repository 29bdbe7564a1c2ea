from django.core.management.base import BaseCommand

from provisioner.bmc import registry


class Command(BaseCommand):
    help = "List the out-of-band drivers installed here (built in and plug-ins) and what each can do."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="One JSON document instead of a table.")

    def handle(self, *args, json=False, **options):
        drivers = registry.drivers()
        if json:
            import json as json_module

            document = {
                "drivers": [
                    {
                        "name": d.name,
                        "label": d.label,
                        "capabilities": sorted(d.capabilities),
                        "default_port": d.default_port,
                        "origin": d.origin,
                    }
                    for d in drivers.values()
                ],
                "errors": list(registry.load_errors),
            }
            self.stdout.write(json_module.dumps(document, indent=2))
            return
        columns = list(registry.Capability)
        width = max(len(name) for name in drivers)
        self.stdout.write(f"{'driver':<{width}}  " + " ".join(c.value for c in columns) + "  origin")
        for d in drivers.values():
            marks = " ".join(("yes" if d.can(c) else "-").center(len(c.value)) for c in columns)
            self.stdout.write(f"{d.name:<{width}}  {marks}  {d.origin}")
        for error in registry.load_errors:
            self.stderr.write(f"not loaded: {error}")
