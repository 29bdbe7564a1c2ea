"""Recordings as asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header line, then one
JSON array per event, ``[seconds, "o", text]`` for output, ``"i"`` for input, ``"r"`` for a resize (``"COLSxROWS"``)
and ``"m"`` for markers (who took the keyboard). Any asciicast player replays them, and so does the project's own
(static/js/cast-player.js). Serial consoles (serialconsole) and SSH sessions (access) record with the same class."""

from __future__ import annotations

import codecs
import json
import os
import time
from pathlib import Path

WIDTH, HEIGHT = 80, 24


class CastRecorder:
    """Appends events to one file as they happen, flushed each time, so a running session can be replayed.

    Writes are small and local and happen on the event loop (a few hundred bytes per event, page-cache speed);
    bytes are decoded incrementally, so a UTF-8 character split across two packets stays whole.
    """

    def __init__(self, path: Path, *, title: str, max_bytes: int, width: int = WIDTH, height: int = HEIGHT):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.truncated = False
        self.started = time.monotonic()
        self._decoders = {kind: codecs.getincrementaldecoder("utf-8")(errors="replace") for kind in "oi"}
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - kept open for the session's life
        header = {
            "version": 2,
            "width": width,
            "height": height,
            "timestamp": int(time.time()),
            "title": title,
            "env": {"TERM": "xterm-256color"},
        }
        self.size = 0
        self._write(json.dumps(header) + "\n")

    def _write(self, line: str) -> None:
        if self._file is None:
            return
        self._file.write(line)
        self._file.flush()
        self.size += len(line.encode())

    def _event(self, kind: str, text: str) -> None:
        if self._file is None or self.truncated or not text:
            return
        line = json.dumps([round(time.monotonic() - self.started, 6), kind, text]) + "\n"
        if self.size + len(line) > self.max_bytes:
            self.truncated = True
            self._write(json.dumps([round(time.monotonic() - self.started, 6), "m", "recording truncated"]) + "\n")
            return
        self._write(line)

    def output(self, data: bytes) -> None:
        self._event("o", self._decoders["o"].decode(data))

    def input(self, data: bytes) -> None:
        self._event("i", self._decoders["i"].decode(data))

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def marker(self, text: str) -> None:
        self._event("m", text)

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def counts(recorder: CastRecorder | None) -> dict:
    """The recording's fields of a session row: its size on disk and whether it hit its cap."""
    return {"cast_bytes": recorder.size if recorder else 0, "truncated": recorder.truncated if recorder else False}


def read_cast(path: Path) -> tuple[dict, list[list]]:
    """The header and events of a recording; ValueError naming the line that is not asciicast v2."""
    with open(path, encoding="utf-8") as cast:
        lines = cast.read().splitlines()
    if not lines:
        raise ValueError(f"{path.name}: empty recording")
    header = json.loads(lines[0])
    if not isinstance(header, dict) or header.get("version") != 2:
        raise ValueError(f"{path.name}, line 1: not an asciicast v2 header")
    events = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        event = json.loads(line)
        if not (isinstance(event, list) and len(event) == 3 and isinstance(event[1], str)):
            raise ValueError(f"{path.name}, line {number}: not an asciicast v2 event")
        events.append(event)
    return header, events
