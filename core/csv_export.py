"""CSV downloads: every export streams through here, so every cell is formula-escaped the same way."""

import csv
from collections.abc import Iterable

from django.http import StreamingHttpResponse

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """A CSV cell a spreadsheet will not evaluate: text starting like a formula gets a leading quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """A file that hands back what is written, so csv.writer yields lines for streaming."""

    def write(self, value):
        return value


def streaming_csv(header: Iterable[str], rows: Iterable[Iterable], *, filename: str) -> StreamingHttpResponse:
    """A download of ``header`` then ``rows``, each cell passed through safe_cell(), streamed as it is read."""
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow([safe_cell(name) for name in header])
        for row in rows:
            yield writer.writerow([safe_cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
