from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.service import Actor
from inventory import import_format, importing


class Command(BaseCommand):
    help = (
        "Preview importing machines from a CSV, JSON or YAML file (README, Bulk import): what each row would create "
        "or change, and every problem with its row and column. With --apply, import it: every row, or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the file; its format from its extension (.csv, .json, .yaml/.yml)")
        parser.add_argument("--apply", action="store_true", help="write it (one transaction, one audit entry)")
        parser.add_argument("--create-racks", action="store_true", help="make racks the file names that do not exist")
        parser.add_argument("--format", choices=import_format.FORMATS, help="instead of guessing from the extension")

    def handle(self, *args, file, apply, create_racks, format, **options):
        path = Path(file)
        file_format = format or {".yml": "yaml"}.get(path.suffix.lower(), path.suffix.lower().lstrip("."))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        try:
            if apply:
                result = importing.apply(data, file_format, actor=Actor.system("import_machines"),
                                         create_racks=create_racks)  # fmt: skip
            else:
                result = importing.plan(data, file_format, create_racks=create_racks)
        except import_format.FileRefused as exc:
            raise CommandError(f"{file}: {exc}.") from None
        except importing.ImportRefused as exc:
            self._show(exc.plan)
            raise CommandError(f"{exc}.") from None
        self._show(result)
        if not result.ok:
            raise CommandError(f"{len(result.problems)} problem(s); fix the file and preview again.")
        verb = "Imported" if apply else "Would import"
        self.stdout.write(
            f"{verb}: {result.count('create')} created, {result.count('change')} changed, "
            f"{result.count('unchanged')} unchanged"
            + (f"; racks made: {', '.join('/'.join(k) for k in result.new_racks)}" if result.new_racks else "")
        )

    def _show(self, result: importing.Plan) -> None:
        for row in result.rows:
            if row.action == "unchanged":
                continue
            changes = ", ".join(f"{c}: {old!r} -> {new!r}" for c, (old, new) in row.changes.items())
            self.stdout.write(f"row {row.row} {row.hostname}: {row.action}" + (f" ({changes})" if changes else ""))
        for problem in result.problems:
            self.stderr.write(f"row {problem.row}, {problem.column}: {problem.message}")
