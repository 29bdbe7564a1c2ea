import argparse
import getpass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from audit.service import Actor
from installs import library
from installs import workflow as wf
from installs.models import Script


def _seconds(value: str) -> int:
    try:
        return wf.parse_duration(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: seconds, or 30m, 2h (1 s to 7 days)") from None


class Command(BaseCommand):
    help = "The script library (what workflows run in the memory OS): save a script as a new version, list them."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        save = actions.add_parser("save", help="Save FILE as script NAME; a changed script is a new version.")
        save.add_argument("name")
        save.add_argument("file", metavar="FILE")
        save.add_argument("--timeout", type=_seconds, default=600, help="Stopped after this long (default 600 s).")
        save.add_argument("--safe-to-repeat", action="store_true", help="Running it twice does no harm.")
        save.add_argument("--description", default="")
        actions.add_parser("list", help="The latest version of each script.")

    def handle(self, *args, action, **options):
        getattr(self, f"do_{action}")(**options)

    def do_save(self, name, file, timeout, safe_to_repeat, description, **options):
        try:
            body = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file}: cannot read it: {exc}") from None
        try:
            row, new = library.save_script(
                name,
                body,
                Actor.system(f"cli:{getpass.getuser()}"),
                description=description,
                timeout_s=timeout,
                safe_to_repeat=safe_to_repeat,
            )
        except ValidationError as exc:
            problems = [f"{field}: {m}" for field, messages in exc.message_dict.items() for m in messages]
            raise CommandError("Not saved: " + "; ".join(problems)) from None
        except IntegrityError:
            raise CommandError(f"{name}: saved by someone else at the same moment; run it again.") from None
        self.stdout.write(f"{row.name} version {row.version}" + ("" if new else " (unchanged)"))

    def do_list(self, **options):
        rows = [("NAME", "VERSION", "TIMEOUT", "REPEAT", "SAVED", "BY", "DESCRIPTION")]
        for s in Script.objects.order_by("name", "-version").distinct("name").defer("body"):
            saved = s.created_at.strftime("%Y-%m-%d %H:%M")
            repeat = "safe" if s.safe_to_repeat else "no"
            rows.append((s.name, str(s.version), f"{s.timeout_s}s", repeat, saved, s.created_by_label, s.description))
        if len(rows) == 1:
            self.stdout.write("No scripts in the library.")
            return
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
