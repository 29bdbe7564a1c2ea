import getpass
import re
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from audit.service import Actor
from installs import library, workflow_docs
from installs import workflow as wf
from installs.models import Workflow

_LINE = re.compile(r"^line (\d+): (.*)$", re.S)


class Command(BaseCommand):
    help = (
        "The workflow library: check documents, save one as a new version, list and show them, and write the "
        "generated task reference (docs/workflow-tasks.md) and JSON Schema (docs/workflow.schema.json)."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        check = actions.add_parser("check", help="Check documents as saving them would; print FILE:line: reason.")
        check.add_argument("files", nargs="+", metavar="FILE")
        save = actions.add_parser("save", help="Check and save a document; print its name and version.")
        save.add_argument("file", metavar="FILE")
        actions.add_parser("list", help="The latest version of each workflow.")
        show = actions.add_parser("show", help="Print a workflow's document (the stock ones too).")
        show.add_argument("name")
        show.add_argument("--version", type=int, dest="number", help="That version; the latest when left out.")
        docs = actions.add_parser("docs", help="Write docs/workflow-tasks.md and docs/workflow.schema.json.")
        docs.add_argument("--check", action="store_true", help="Write nothing; exit 1 when a file is behind.")

    def handle(self, *args, action, **options):
        getattr(self, f"do_{action}")(**options)

    def _read(self, name: str) -> str:
        try:
            return Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise wf.WorkflowInvalid([f"cannot read it: {exc}"]) from None

    def _problems(self, name: str, exc: wf.WorkflowInvalid) -> None:
        for message in exc.messages:
            at_line = _LINE.match(message)
            self.stdout.write(f"{name}:{at_line[1]}: {at_line[2]}" if at_line else f"{name}: {message}")

    def do_check(self, files, **options):
        bad = 0
        for name in files:
            try:
                library.check(self._read(name))
            except wf.WorkflowInvalid as exc:
                self._problems(name, exc)
                bad += 1
            else:
                self.stdout.write(f"{name}: ok")
        if bad:
            raise CommandError(f"{bad} of {len(files)} document(s) refused.", returncode=1)

    def do_save(self, file, **options):
        try:
            row, new = library.save_workflow(self._read(file), Actor.system(f"cli:{getpass.getuser()}"))
        except wf.WorkflowInvalid as exc:
            self._problems(file, exc)
            raise CommandError(f"{file}: not saved.", returncode=1) from None
        except IntegrityError:
            raise CommandError(f"{file}: saved by someone else at the same moment; run it again.") from None
        self.stdout.write(f"{row.name} version {row.version}" + ("" if new else " (unchanged)"))

    def do_list(self, **options):
        rows = [("NAME", "VERSION", "SAVED", "BY", "DESCRIPTION")]
        for w in Workflow.objects.order_by("name", "-version").distinct("name").defer("document"):
            saved = w.created_at.strftime("%Y-%m-%d %H:%M")
            rows.append((w.name, str(w.version), saved, w.created_by_label, w.description))
        if len(rows) == 1:
            self.stdout.write("No workflows in the library (profiles without one run the stock workflows).")
            return
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())

    def do_show(self, name, number, **options):
        rows = Workflow.objects.filter(name=name)
        row = rows.filter(version=number).first() if number else rows.order_by("-version").first()
        if row is not None:
            self.stdout.write(row.document, ending="" if row.document.endswith("\n") else "\n")
            return
        if wf.is_stock(name) and not number:
            self.stdout.write(wf.stock_text_named(name), ending="")
            return
        raise CommandError(f"No workflow {name}" + (f" version {number}." if number else "."))

    def do_docs(self, check, **options):
        if check:
            behind = workflow_docs.stale()
            if behind:
                for name in behind:
                    self.stdout.write(f"{name}: not what the task table gives; run manage.py workflow docs")
                raise CommandError(f"{len(behind)} generated file(s) behind.", returncode=1)
            self.stdout.write("ok")
            return
        written = workflow_docs.write()
        self.stdout.write("\n".join(f"wrote {n}" for n in written) if written else "up to date")
