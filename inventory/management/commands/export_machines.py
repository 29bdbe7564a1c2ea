import sys

from django.core.management.base import BaseCommand

from inventory import import_format, importing


class Command(BaseCommand):
    help = "Write every machine in the import format (BMC passwords blank) to standard output or --output."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=import_format.FORMATS, default="csv")
        parser.add_argument("--output", "-o", help="a file instead of standard output")

    def handle(self, *args, format, output, **options):
        text = import_format.write(importing.export_rows(), format)
        if output:
            with open(output, "w", encoding="utf-8", newline="") as out:
                out.write(text)
        else:
            sys.stdout.write(text)
