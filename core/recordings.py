"""A recording (asciicast v2, core/asciicast.py) as a download: the serial console's and the SSH sessions'
pages and APIs hand them out the same way."""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, Http404


def cast_download(path: Path, filename: str) -> FileResponse:
    """The file as an attachment named ``filename``; Http404 when there is none (it never connected, or
    retention removed it)."""
    if not path.exists():
        raise Http404("This session has no recording.")
    return FileResponse(
        open(path, "rb"),  # noqa: SIM115 - FileResponse closes it
        as_attachment=True,
        filename=filename,
        content_type="application/x-asciicast",
    )
