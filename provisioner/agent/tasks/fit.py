"""Whether an image can fit on its disk, asked before any disk is wiped, and sizes said as people read them.

The size asked is what the image server announces (HEAD, Content-Length): the file's size, exactly what is
written for a raw image and a lower bound for a compressed one, so an image refused here could never fit.
An answer that says nothing (no HEAD, no length, no server) refuses nothing: write_image checks as it writes.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request

from provisioner.agent.results import TaskFailed

# A HEAD answer is immediate from any healthy mirror; a slow one only delays the check, never fails it.
HEAD_TIMEOUT_S = 15


def human(n: int) -> str:
    """Bytes in binary units: "1.0 MiB", "12.4 GiB"."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def safe_url(url: str) -> str:
    """The URL without credentials or query (a pre-signed URL's query is a secret)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def announced_size(url: str) -> int | None:
    """The image file's size as its server announces it, or None when it does not say."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "provisioner-agent"})
    try:
        with urllib.request.urlopen(request, timeout=HEAD_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length", "")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return None
    return int(length) if length.isdigit() else None


def refuse_unless_it_fits(url: str, disk: str, disk_size: int) -> None:
    size = announced_size(url)
    if size is not None and size > disk_size:
        raise TaskFailed(
            "ImageTooLarge",
            f"the image ({human(size)}, {safe_url(url)}) is larger than {disk} ({human(disk_size)}); "
            "no disk was wiped",
        )
