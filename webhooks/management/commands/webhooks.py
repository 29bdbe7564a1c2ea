from django.core.management.base import BaseCommand, CommandError

from audit.service import Actor
from webhooks.delivery import replay
from webhooks.models import Delivery, Endpoint


class Command(BaseCommand):
    help = "List webhook endpoints and recent deliveries, or replay a delivery (--replay ID)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--replay", type=int, metavar="ID", help="Send delivery ID's event again, as a new delivery."
        )
        parser.add_argument("--limit", type=int, default=20, help="How many recent deliveries to list (default 20).")

    def handle(self, *args, replay: int | None, limit: int, **options):
        if replay is not None:
            return self.replay(replay)
        self.table(
            [("NAME", "URL", "EVENTS", "ACTIVE")]
            + [(e.name, e.url, ",".join(e.events), "yes" if e.active else "no") for e in Endpoint.objects.all()],
            empty="No endpoints.",
        )
        self.stdout.write("")
        deliveries = Delivery.objects.select_related("endpoint")[: max(1, min(limit, 1000))]
        rows = [("ID", "ENDPOINT", "EVENT", "STATE", "TRIES", "STATUS", "ERROR", "CREATED")]
        for d in deliveries:
            status = str(d.last_status or "")
            rows.append((str(d.pk), d.endpoint.name, d.event, d.state, str(d.attempts), status, d.last_error[:60],
                         f"{d.created_at:%Y-%m-%d %H:%M:%S}"))  # fmt: skip
        self.table(rows, empty="No deliveries.")

    def replay(self, delivery_id: int) -> None:
        if not Delivery.objects.filter(pk=delivery_id).exists():
            raise CommandError(f"No delivery {delivery_id}.")
        copy = replay(delivery_id, Actor.system("manage.py webhooks"))
        self.stdout.write(f"Delivery {delivery_id} replayed as delivery {copy.pk}.")

    def table(self, rows, *, empty: str) -> None:
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if len(rows) == 1:
            self.stdout.write(empty)
