from django.core.management.base import BaseCommand

from installs.models import ACTIVE_STATES, Install


class Command(BaseCommand):
    help = "List installs with their state and current step (active ones unless --all)."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Include ended installs (the last 100).")

    def handle(self, *args, all, **options):
        installs = Install.objects.select_related("machine", "profile").order_by("-pk")
        installs = installs[:100] if all else installs.filter(state__in=ACTIVE_STATES)
        rows = [("ID", "MACHINE", "PROFILE", "STATE", "%", "STEP / REASON", "BY")]
        for i in installs:
            detail = i.failure_reason if i.failure_reason else i.current_step
            rows.append(
                (str(i.pk), i.machine.hostname, i.profile.name, i.state, str(i.progress), detail, i.requested_by_label)
            )
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if len(rows) == 1:
            self.stdout.write("No installs." if all else "No active installs.")
