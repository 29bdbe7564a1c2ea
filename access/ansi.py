"""Terminal output as plain text, for searching session transcripts. No Django.

Escape sequences (colours, cursor moves, titles) are dropped, carriage returns folded, backspaces applied,
other control characters removed. Chunks may split a sequence anywhere: the unfinished tail waits for the next.
"""

from __future__ import annotations

import codecs
import re

_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor, erase
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window title, hyperlinks
    r"|\x1b[PX^_][^\x1b]*\x1b\\"  # DCS, SOS, PM, APC strings
    r"|\x1b[()*+][0-9A-Za-z]"  # character set selection
    r"|\x1b[ -/]*[0-~]"  # any other two-character escape
)
# The start of a sequence that the next chunk may finish.
_UNFINISHED = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[PX^_][^\x1b]*\x1b?|[()*+]|[ -/]*)")
_CONTROLS = re.compile(r"[\x00-\x07\x0b-\x1f\x7f]")
# An escape this long without its end is not one: show it rather than hold text back for ever.
_MAX_PENDING = 512


class Transcript:
    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self.parts: list[str] = []
        self.size = 0
        self.full = False
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> None:
        if self.full:
            return
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        start = text.find("\x1b", max(0, len(text) - _MAX_PENDING))
        while start != -1:
            if _UNFINISHED.fullmatch(text, start):
                text, self._pending = text[:start], text[start:]
                break
            start = text.find("\x1b", start + 1)
        self._append(plain(text))

    def _append(self, text: str) -> None:
        while "\b" in text:
            index = text.index("\b")
            if index == 0:
                while self.parts and not self.parts[-1]:
                    self.parts.pop()
                if self.parts and not self.parts[-1].endswith("\n"):
                    self.parts[-1] = self.parts[-1][:-1]
                    self.size -= 1
                text = text[1:]
            else:
                text = text[: index - 1] + text[index + 1 :]
        room = self.max_chars - self.size
        if len(text) >= room:
            text, self.full = text[:room], True
        if text:
            self.parts.append(text)
        self.size += len(text)

    def text(self) -> str:
        joined = "".join(self.parts)
        self.parts = [joined]
        return joined


def plain(text: str) -> str:
    """``text`` without escape sequences and control characters (newlines, tabs and backspaces kept)."""
    text = _SEQUENCE.sub("", text).replace("\r\n", "\n").replace("\r", "")
    return _CONTROLS.sub(lambda m: m.group() if m.group() == "\b" else "", text)
