"""Decompressors for write_image: gzip and xz in process, zstd through the `zstd` binary.

Each takes compressed bytes in pieces and hands back decompressed pieces, several concatenated streams included
(pigz, pixz, `zstd -T0`), with bounded memory: a highly compressed piece cannot balloon.
"""

from __future__ import annotations

import lzma
import os
import selectors
import subprocess
import zlib
from collections.abc import Iterator

from provisioner.agent.host import Host
from provisioner.agent.results import TaskFailed

MIB = 1024 * 1024
CHUNK = MIB
# Upper bound on what one decompress call may return.
MAX_INFLATE = 16 * MIB
# zstd that neither takes input nor gives output for this long is stuck (a full pipe both ways cannot happen:
# its output is always drained).
STUCK_S = 60
# Enough of zstd's complaint to say why.
STDERR_KEEP = 4096


class Corrupt(Exception):
    """The compressed stream is damaged or cut short."""


class Inflater:
    """gzip, xz, or none, in process."""

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
        try:
            yield from self._feed(data)
        except (zlib.error, lzma.LZMAError) as exc:
            raise Corrupt(f"the image does not decompress ({self.kind}): {exc}") from exc

    def _feed(self, data: bytes) -> Iterator[bytes]:
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

    def finish(self) -> Iterator[bytes]:
        if self._mid_stream:
            raise Corrupt(f"the {self.kind} stream of the image is truncated")
        yield from ()

    def close(self) -> None:
        pass


class ZstdProcess:
    """`zstd --decompress` as a child: the download goes to its stdin, its stdout goes to the disk.

    One thread drives both pipes through a selector, so neither side can fill its pipe while the other waits."""

    kind = "zstd"

    def __init__(self, host: Host):
        self._proc = host.popen(
            ["zstd", "--decompress", "--stdout", "--quiet"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        )  # fmt: skip
        self._open = {self._proc.stdout.fileno(), self._proc.stderr.fileno()}
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            os.set_blocking(pipe.fileno(), False)
        self._stderr = bytearray()
        self._input_closed = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        yield from self._pump(memoryview(data), finishing=False)

    def finish(self) -> Iterator[bytes]:
        yield from self._pump(memoryview(b""), finishing=True)
        status = self._proc.wait()
        if status != 0:
            raise Corrupt(f"the image does not decompress (zstd exited with status {status}): {self._complaint()}")

    def _complaint(self) -> str:
        return self._stderr.decode(errors="replace").strip() or "no message"

    def _close_input(self) -> None:
        if not self._input_closed:
            self._input_closed = True
            self._proc.stdin.close()

    def _pump(self, view: memoryview, *, finishing: bool) -> Iterator[bytes]:
        stdin = self._proc.stdin.fileno() if not self._input_closed else -1
        stdout = self._proc.stdout.fileno()
        broken = False
        with selectors.DefaultSelector() as sel:
            if view and not self._input_closed:
                sel.register(stdin, selectors.EVENT_WRITE)
            for fd in self._open:
                sel.register(fd, selectors.EVENT_READ)
            if finishing:
                self._close_input()
            while view if not finishing else self._open:
                events = sel.select(STUCK_S)
                if not events:
                    raise TaskFailed("ImageDownloadFailed", f"zstd made no progress for {STUCK_S} s")
                for key, _ in events:
                    if key.fd == stdin:
                        try:
                            view = view[os.write(stdin, view[:CHUNK]) :]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            # zstd gave up on its input (corrupt data): collect what it said and why.
                            view = memoryview(b"")
                            broken = finishing = True
                        if not view:
                            sel.unregister(stdin)
                            if finishing:
                                self._close_input()
                        continue
                    try:
                        data = os.read(key.fd, CHUNK)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(key.fd)
                        self._open.discard(key.fd)
                    elif key.fd == stdout:
                        yield data
                    elif len(self._stderr) < STDERR_KEEP:
                        self._stderr += data[: STDERR_KEEP - len(self._stderr)]
        if broken:
            raise Corrupt(
                f"the image does not decompress (zstd exited with status {self._proc.wait()}): {self._complaint()}"
            )

    def close(self) -> None:
        """Stop zstd if it is still running (a restart from byte 0, a failure) and release its pipes."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            pipe.close()


def decoder(kind: str, host: Host) -> Inflater | ZstdProcess:
    if kind == "zstd":
        return ZstdProcess(host)
    return Inflater(kind)
