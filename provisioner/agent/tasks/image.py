"""write_image: stream an image over HTTP, decompress on the fly, write it to a disk, verify its sha256.

The sha256 is of the decompressed stream, i.e. of exactly the bytes written. A dropped connection resumes with a
Range request from the compressed offset already consumed (the decompressor and the hash carry on where they
were); a server that ignores Range, or whose file changed meanwhile (If-Range), sends the whole image again and
the write starts over from byte 0.
"""

from __future__ import annotations

import hashlib
import http.client
import lzma
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator

import provisioner.agent.tasks.params as p
from provisioner.agent.context import Context
from provisioner.agent.results import TaskFailed
from provisioner.agent.tasks.disks import MIB, open_for_write

CHUNK = MIB
# Upper bound on what one decompress call may return, so a highly compressed chunk cannot balloon in memory.
MAX_INFLATE = 16 * MIB
# A mirror that sends nothing for this long is treated as a dropped connection and resumed; slow disks behind
# busy mirrors pause for tens of seconds, so it is not shorter.
READ_TIMEOUT_S = 60
# Flushed to the disk every so often, so the percent reported is what the disk holds rather than what sits in the
# page cache, and the final fsync does not stall for minutes.
SYNC_EVERY = 256 * MIB
# Give up when no byte arrived for this long: a switch reload or a mirror restart is over well within it, while a
# mirror that is gone fails the install instead of holding the machine forever. Any progress restarts the clock.
STALL_LIMIT_S = 600
# Longest pause between download attempts.
RETRY_CAP_S = 30.0

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
COMPRESSIONS = ("auto", "gz", "xz", "none")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class _Dropped(Exception):
    """The transfer broke off; worth another attempt."""


class _Decoder:
    """Decompresses one format, including several concatenated streams (pigz, pixz)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._mid_stream = False
        self._new()

    def _new(self) -> None:
        if self.kind == "gz":
            self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        elif self.kind == "xz":
            self._d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        self._mid_stream = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.kind == "none":
            yield data
            return
        while True:
            if data:
                self._mid_stream = True
            out = self._d.decompress(data, MAX_INFLATE)
            data = self._d.unconsumed_tail if self.kind == "gz" else b""
            if out:
                yield out
            if self._d.eof:
                data = self._d.unused_data + data
                self._new()
                if not data:
                    return
                continue
            if self.kind == "xz" and self._d.needs_input:
                return
            if self.kind == "gz" and not data and not out:
                return

    def complete(self) -> bool:
        return not self._mid_stream


class _Image:
    """Where the write stands: compressed bytes consumed, decompressed bytes written, and their hash."""

    def __init__(self, fd: int, disk_size: int, compression: str):
        self.fd = fd
        self.disk_size = disk_size
        self.compression = compression
        self.restart()

    def restart(self) -> None:
        self.received = 0
        self.written = 0
        self.hash = hashlib.sha256()
        self.decoder: _Decoder | None = None
        self._head = b""

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.decoder is None:
            # "auto" looks at the magic bytes, which need the first 6 bytes of the stream.
            self._head += data
            if self.compression == "auto" and len(self._head) < len(XZ_MAGIC):
                return
            data, self._head = self._head, b""
            self.decoder = _Decoder(self._sniff(data))
        try:
            for out in self.decoder.feed(data):
                self._write(out)
        except (zlib.error, lzma.LZMAError) as exc:
            raise TaskFailed(
                "ImageChecksumMismatch", f"the image does not decompress ({self.decoder.kind}): {exc}"
            ) from exc

    def _sniff(self, head: bytes) -> str:
        if self.compression != "auto":
            return self.compression
        if head.startswith(GZIP_MAGIC):
            return "gz"
        if head.startswith(XZ_MAGIC):
            return "xz"
        return "none"

    def finish(self) -> None:
        if self.decoder is None and self._head:
            self.decoder = _Decoder(self._sniff(self._head))
            head, self._head = self._head, b""
            for out in self.decoder.feed(head):
                self._write(out)
        if self.decoder is not None and not self.decoder.complete():
            raise TaskFailed("ImageChecksumMismatch", f"the {self.decoder.kind} stream of the image is truncated")

    def _write(self, data: bytes) -> None:
        end = self.written + len(data)
        if end > self.disk_size:
            raise TaskFailed("ImageTooLarge", f"the image is larger than the disk ({self.disk_size} bytes)")
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, self.written)
            self.written += n
            view = view[n:]
        self.hash.update(data)
        if self.written // SYNC_EVERY != (self.written - len(data)) // SYNC_EVERY:
            os.fdatasync(self.fd)


def _validator(resp) -> str:
    etag = resp.headers.get("ETag", "")
    # A weak ETag may not be used in If-Range (RFC 9110 13.1.5).
    if etag and not etag.startswith("W/"):
        return etag
    return resp.headers.get("Last-Modified", "")


def _open(url: str, image: _Image, validator: str):
    req = urllib.request.Request(url, headers={"User-Agent": "provisioner-agent"})
    if image.received:
        req.add_header("Range", f"bytes={image.received}-")
        if validator:
            req.add_header("If-Range", validator)
    try:
        return urllib.request.urlopen(req, timeout=READ_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Dropped(f"HTTP {exc.code}") from None
        if exc.code == 416 and image.received:
            # The server no longer has our offset (a different file?): start over without Range.
            image.restart()
            raise _Dropped("HTTP 416 on resume") from None
        raise TaskFailed("ImageDownloadFailed", f"{_safe(url)} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _Dropped(str(getattr(exc, "reason", exc))) from None


def _safe(url: str) -> str:
    """The URL without credentials or query (a pre-signed URL's query is a secret)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def write_image(ctx: Context, params: dict) -> str:
    url = p.text(params, "url")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise p.invalid("url", "an http or https URL is required")
    expected = p.text(params, "sha256").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise p.invalid("sha256", "64 hex digits are required")
    compression = params.get("compression", "auto")
    if compression not in COMPRESSIONS:
        raise p.invalid("compression", f"one of {list(COMPRESSIONS)} is required")
    disk = p.text(params, "disk")
    dev = ctx.host.device(disk)
    fd = open_for_write(dev)
    try:
        image = _Image(fd, os.lseek(fd, 0, os.SEEK_END), compression)
        try:
            _transfer(ctx, url, image)
            image.finish()
            os.fsync(fd)
        except TaskFailed as exc:
            if exc.reason in ("ImageChecksumMismatch", "ImageTooLarge"):
                _spoil(fd)
            raise
        got = image.hash.hexdigest()
        if got != expected:
            _spoil(fd)
            raise TaskFailed(
                "ImageChecksumMismatch",
                f"sha256 of the {image.written} bytes written is {got}, expected {expected}",
            )
    finally:
        os.close(fd)
    ctx.host.remember_target_disk(disk)
    ctx.progress(100, f"{image.written} bytes written to {disk}, sha256 verified")
    return f"wrote {image.written} bytes to {disk} from {_safe(url)}\nsha256 {got}"


def _spoil(fd: int) -> None:
    # A disk holding a half or wrong image must not boot as if it were installed.
    os.pwrite(fd, bytes(MIB), 0)
    os.fsync(fd)


def _transfer(ctx: Context, url: str, image: _Image) -> None:
    validator = ""
    total: int | None = None
    failures = 0
    last_report = 0.0
    last_data = time.monotonic()
    while True:
        ctx.check_abort()
        before = image.received
        try:
            resp = _open(url, image, validator)
            with resp:
                if image.received and resp.status == 206:
                    match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                    if not match or int(match.group(1)) != image.received:
                        # Whatever the server meant, the next attempt fetches the whole image.
                        image.restart()
                        raise _Dropped(f"the server resumed at the wrong offset: {resp.headers.get('Content-Range')}")
                    ctx.log(f"resumed at byte {image.received} of the download")
                else:
                    if image.received:
                        ctx.log(f"the server sent the whole image again; rewriting from the start ({resp.status})")
                        image.restart()
                    validator = _validator(resp)
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                while True:
                    ctx.check_abort()
                    try:
                        data = resp.read(CHUNK)
                    except (http.client.HTTPException, OSError) as exc:
                        raise _Dropped(f"connection lost: {exc!r}") from None
                    if not data:
                        break
                    image.feed(data)
                    now = time.monotonic()
                    if now - last_report >= 0.2:
                        last_report = now
                        percent = image.received * 100 // total if total else None
                        ctx.progress(None if percent is None else min(percent, 99), f"{image.written} bytes written")
            if total is not None and image.received < total:
                raise _Dropped(f"connection closed after {image.received} of {total} bytes")
            return
        except _Dropped as exc:
            now = time.monotonic()
            if image.received > before:
                failures, last_data = 0, now
            else:
                failures += 1
            if now - last_data >= STALL_LIMIT_S:
                raise TaskFailed(
                    "ImageDownloadFailed",
                    f"{_safe(url)}: no data for {now - last_data:.0f} s over {failures} attempts, last: {exc}",
                    retryable=True,
                ) from None
            delay = min(RETRY_CAP_S, ctx.retry_base_s * 2 ** max(0, failures - 1), STALL_LIMIT_S)
            ctx.log(f"download interrupted at byte {image.received} ({exc}); retrying in {delay:.1f} s")
            ctx.sleep(delay)
