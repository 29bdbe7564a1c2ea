"""The lab's demo disk image and the small HTTP server that hands it (and anything else in its directory) out.

The image is a few MiB of deterministic bytes starting with a bootable boot sector that names itself, so a lab
machine whose disk was written with it boots "image", and the same build always has the same checksum.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from provisioner.lab.machine import BOOT_SIGNATURE, BOOT_SIGNATURE_OFFSET, OS_LABEL

DEMO_IMAGE_NAME = "demo-os.img.gz"
DEMO_IMAGE_BYTES = 4 << 20


@dataclass(frozen=True)
class DemoImage:
    path: Path
    sha256: str  # of the decompressed image: what write_image verifies
    size_bytes: int  # decompressed
    gz_sha256: str  # of the file served


def demo_image_bytes(size: int = DEMO_IMAGE_BYTES) -> bytes:
    sector = bytearray(512)
    label = OS_LABEL + b"image\n"
    sector[: len(label)] = label
    sector[BOOT_SIGNATURE_OFFSET:512] = BOOT_SIGNATURE
    # Text rather than zeros, so the image is not all holes, yet compresses to a few KiB.
    filler = b"".join(f"provisioner lab demo OS block {i:08d}\n".encode() for i in range((size - 512) // 39 + 1))
    return bytes(sector) + filler[: size - 512]


def build_demo_image(directory: str | os.PathLike[str], size: int = DEMO_IMAGE_BYTES) -> DemoImage:
    data = demo_image_bytes(size)
    path = Path(directory) / DEMO_IMAGE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same image gives the same .gz file, and so the same checksum on every run.
    packed = gzip.compress(data, compresslevel=6, mtime=0)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(packed)
    os.replace(tmp, path)
    return DemoImage(path, hashlib.sha256(data).hexdigest(), len(data), hashlib.sha256(packed).hexdigest())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class FileServer:
    """Serves one directory over HTTP on 127.0.0.1 from a thread: ``start()``, ``url``, ``stop()``."""

    def __init__(self, directory: str | os.PathLike[str], port: int = 0, address: str = "127.0.0.1"):
        self.directory = str(directory)
        handler = lambda *a, **kw: _QuietHandler(*a, directory=self.directory, **kw)  # noqa: E731
        self.server = http.server.ThreadingHTTPServer((address, port), handler)
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FileServer:
        self.thread = threading.Thread(target=self.server.serve_forever, name="lab-files", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
