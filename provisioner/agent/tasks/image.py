"""write_image: stream an image over HTTP, decompress on the fly, write it to a disk, verify its sha256.

The sha256 is of the decompressed stream, i.e. of exactly the bytes written. A dropped connection resumes with a
Range request from the compressed offset already consumed (the decompressor and the hash carry on where they
were); a server that ignores Range, or whose file changed meanwhile (If-Range), sends the whole image again and
the write starts over from byte 0.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import selectors
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import provisioner.agent.tasks.params as p
from provisioner.agent.context import Context
from provisioner.agent.host import Host
from provisioner.agent.results import TaskFailed
from provisioner.agent.tasks.codecs import Corrupt, Inflater, ZstdProcess, decoder
from provisioner.agent.tasks.disks import MIB, open_for_write
from provisioner.agent.tasks.fit import human, safe_url

CHUNK = MIB
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
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
QCOW2_MAGIC = b"QFI\xfb"
COMPRESSIONS = ("auto", "none", "gz", "xz", "zstd", "qcow2")
# The same formats under the names the control plane's workflows use.
ALIASES = {"raw": "none", "gzip": "gz"}
# Left free in the memory OS when a qcow2 image is kept there: the agent, the tools and the kernel's page tables
# still need room.
SCRATCH_RESERVE = 256 * MIB
SPOOL_NAME = "image.qcow2.part"
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_QEMU_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)\s*")


class _Dropped(Exception):
    """The transfer broke off; worth another attempt."""


class _Spool:
    """A qcow2 image cannot be written as it streams (its clusters come in any order): it is kept in a file,
    verified, then converted."""

    kind = "qcow2"

    def __init__(self, directory: Path, expected_size: int | None):
        self.path = directory / SPOOL_NAME
        free = _free_space(directory)
        if expected_size is not None and expected_size > free:
            raise _no_room(expected_size, free, directory)
        self.directory = directory
        self._file = open(self.path, "wb")

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise _no_room(None, _free_space(self.directory), self.directory) from exc

    def finish(self) -> None:
        self._file.close()

    def close(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def _free_space(directory: Path) -> int:
    st = os.statvfs(directory)
    return max(0, st.f_bavail * st.f_frsize - SCRATCH_RESERVE)


def _no_room(size: int | None, free: int, directory: Path) -> TaskFailed:
    what = f"the qcow2 image ({human(size)})" if size is not None else "the qcow2 image"
    return TaskFailed(
        "ImageTooLarge",
        f"{what} does not fit in the memory OS's free space ({human(free)} in {directory}, keeping "
        f"{SCRATCH_RESERVE // MIB} MiB spare): qcow2 is converted from a local copy, so serve this image raw or "
        "compressed (gzip, xz, zstd) to stream it",
    )


class _Image:
    """Where the write stands: compressed bytes consumed, decompressed bytes written, and their hash (of the
    downloaded file instead for qcow2, whose written form only exists after conversion)."""

    def __init__(self, host: Host, fd: int, disk_size: int, compression: str):
        self.host = host
        self.fd = fd
        self.disk_size = disk_size
        self.compression = compression
        # Content-Length of the current answer, for the qcow2 room check.
        self.expected: int | None = None
        self.decoder: Inflater | ZstdProcess | None = None
        self.spool: _Spool | None = None
        self.restart()

    @property
    def download_share(self) -> int:
        """Percent of the task the download stands for: a qcow2 conversion takes the second half."""
        return 50 if self.spool is not None or self.compression == "qcow2" else 100

    def restart(self) -> None:
        self.close()
        self.received = 0
        self.written = 0
        self.hash = hashlib.sha256()
        self._head = b""
        self.kind: str | None = None  # the format, once the first bytes told it

    def close(self) -> None:
        if self.decoder is not None:
            self.decoder.close()
            self.decoder = None
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.decoder is None and self.spool is None:
            # "auto" looks at the magic bytes, which need the first 6 bytes of the stream.
            self._head += data
            if self.compression == "auto" and len(self._head) < len(XZ_MAGIC):
                return
            data, self._head = self._head, b""
            self._start(self._sniff(data))
        if self.spool is not None:
            self.hash.update(data)
            self.spool.write(data)
            return
        self._decode(self.decoder.feed, data)

    def _start(self, kind: str) -> None:
        self.kind = kind
        if kind == "qcow2":
            self.spool = _Spool(self.host.scratch_dir(), self.expected)
        else:
            self.decoder = decoder(kind, self.host)

    def _decode(self, step, *args) -> None:
        try:
            for out in step(*args):
                self._write(out)
        except Corrupt as exc:
            raise TaskFailed("ImageChecksumMismatch", str(exc)) from exc

    def _sniff(self, head: bytes) -> str:
        if self.compression != "auto":
            return self.compression
        for magic, kind in ((GZIP_MAGIC, "gz"), (XZ_MAGIC, "xz"), (ZSTD_MAGIC, "zstd"), (QCOW2_MAGIC, "qcow2")):
            if head.startswith(magic):
                return kind
        return "none"

    def finish(self) -> None:
        if self.decoder is None and self.spool is None and self._head:
            head, self._head = self._head, b""
            self._start(self._sniff(head))
            self.received -= len(head)
            self.feed(head)
        if self.spool is not None:
            self.spool.finish()
        elif self.decoder is not None:
            self._decode(self.decoder.finish)

    def _too_large(self) -> str:
        disk = human(self.disk_size)
        if self.kind == "none":
            size = human(self.expected) if self.expected is not None else f"more than {disk}"
            return f"the image ({size}) is larger than the disk ({disk})"
        packed = f" from a {human(self.expected)} file" if self.expected is not None else ""
        return f"the image is larger than the disk ({disk}): more than {disk} once decompressed{packed}"

    def _write(self, data: bytes) -> None:
        end = self.written + len(data)
        if end > self.disk_size:
            raise TaskFailed("ImageTooLarge", self._too_large())
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


_safe = safe_url


def write_image(ctx: Context, params: dict) -> str:
    url = p.text(params, "url")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise p.invalid("url", "an http or https URL is required")
    expected = p.text(params, "sha256").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise p.invalid("sha256", "64 hex digits are required")
    compression = params.get("compression", "auto")
    compression = ALIASES.get(compression, compression) if isinstance(compression, str) else compression
    if compression not in COMPRESSIONS:
        raise p.invalid("compression", f"one of {sorted({*COMPRESSIONS, *ALIASES})} is required")
    disk = p.text(params, "disk")
    dev = ctx.host.device(disk)
    fd = open_for_write(dev)
    image = _Image(ctx.host, fd, os.lseek(fd, 0, os.SEEK_END), compression)
    converting = converted = False
    try:
        try:
            _transfer(ctx, url, image)
            image.finish()
            got = image.hash.hexdigest()
            if image.spool is not None:
                # Checked before qemu-img reads a byte of it: only the image the control plane named is parsed.
                if got != expected:
                    raise TaskFailed(
                        "ImageChecksumMismatch",
                        f"sha256 of the {image.received}-byte qcow2 image downloaded is {got}, expected {expected}; "
                        f"{disk} was not written",
                    )
                size = _qcow2_size(ctx, image.spool.path, image.disk_size)
                converting = True
                _convert(ctx, image.spool.path, dev, size)
                image.written, converted = size, True
            os.fsync(fd)
        except TaskFailed as exc:
            # Only a disk that was written to: a qcow2 refused before conversion leaves it as it was.
            if (image.written or converting) and exc.reason in (
                "ImageChecksumMismatch",
                "ImageTooLarge",
                "ImageConversionFailed",
            ):
                _spoil(fd)
            raise
        if got != expected:
            _spoil(fd)
            raise TaskFailed(
                "ImageChecksumMismatch",
                f"sha256 of the {image.written} bytes written is {got}, expected {expected}",
            )
    finally:
        image.close()
        os.close(fd)
    ctx.host.remember_target_disk(disk)
    ctx.progress(100, f"{image.written} bytes written to {disk}, sha256 verified")
    of = " of the qcow2 image" if converted else ""
    return f"wrote {image.written} bytes to {disk} from {_safe(url)}\nsha256{of} {got}"


def _qcow2_size(ctx: Context, path: Path, disk_size: int) -> int:
    """The size of the disk inside the verified qcow2 file, once it is known to fit and to be self-contained."""
    done = ctx.host.run(["qemu-img", "info", "--output=json", "-f", "qcow2", str(path)], timeout=120)
    try:
        info = json.loads(done.output) if done.returncode == 0 else None
        size = int(info["virtual-size"])
    except (ValueError, KeyError, TypeError):
        raise TaskFailed(
            "ImageConversionFailed", f"qemu-img cannot read the qcow2 image: {done.output.strip()}"
        ) from None
    # The image names no other file: a backing file or an external data file would be read from the memory OS.
    data_file = (info.get("format-specific") or {}).get("data", {}).get("data-file")
    if info.get("backing-filename") or data_file:
        raise TaskFailed(
            "ImageConversionFailed",
            f"the qcow2 image refers to another file ({info.get('backing-filename') or data_file}); "
            "it must be self-contained (qemu-img convert -O qcow2 flattens it)",
        )
    if size > disk_size:
        raise TaskFailed(
            "ImageTooLarge", f"the qcow2 image's disk is {human(size)}, larger than the disk ({human(disk_size)})"
        )
    return size


def _convert(ctx: Context, path: Path, dev: str, size: int) -> None:
    ctx.progress(50, f"converting the {size}-byte qcow2 image")
    # -n: the disk exists and keeps its size; -p: progress lines "(12.50/100%)" on stdout.
    argv = ["qemu-img", "convert", "-p", "-n", "-f", "qcow2", "-O", "raw", str(path), dev]
    proc = ctx.host.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    tail = bytearray()
    try:
        with selectors.DefaultSelector() as sel:
            for pipe in (proc.stdout, proc.stderr):
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe, selectors.EVENT_READ)
            open_pipes = 2
            while open_pipes:
                if ctx.aborted:
                    proc.kill()
                ctx.check_abort()
                for key, _ in sel.select(0.5):
                    try:
                        data = os.read(key.fd, 4096)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(key.fileobj)
                        open_pipes -= 1
                        continue
                    tail = (tail + data)[-4096:]
                    found = _QEMU_PROGRESS.findall(data)
                    if found:
                        percent = float(found[-1])
                        ctx.progress(min(99, 50 + int(percent) // 2), f"converting the qcow2 image: {percent:.0f}%")
        status = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if status != 0:
        message = _QEMU_PROGRESS.sub(b"", tail).decode(errors="replace").strip()
        raise TaskFailed("ImageConversionFailed", f"qemu-img convert exited with status {status}: {message}")


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
                    image.expected = total
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
                        share = image.download_share
                        percent = image.received * share // total if total else None
                        what = f"{image.written} bytes written" if share == 100 else f"{image.received} bytes fetched"
                        ctx.progress(None if percent is None else min(percent, 99), what)
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
