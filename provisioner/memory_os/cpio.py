"""A newc ("070701") cpio writer: the initramfs format the kernel unpacks.

Written here rather than with cpio(1) so that /dev/console can be a device node without the builder creating
one on the host, and so that owners and times are fixed (root, epoch): the same inputs give the same bytes.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def directory(name: str, perm: int = 0o755) -> Entry:
    return Entry(name, stat.S_IFDIR | perm)


def file(name: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(name, stat.S_IFREG | perm, data)


def char_device(name: str, major: int, minor: int, perm: int = 0o600) -> Entry:
    return Entry(name, stat.S_IFCHR | perm, rdev=(major, minor))


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(ino: int, entry: Entry, name: bytes) -> bytes:
    fields = (ino, entry.mode, 0, 0, 2 if stat.S_ISDIR(entry.mode) else 1, 0, len(entry.data), 0, 0,
              entry.rdev[0], entry.rdev[1], len(name), 0)  # fmt: skip
    return b"070701" + b"".join(b"%08X" % value for value in fields)


def write(path: Path, entries: list[Entry]) -> None:
    with path.open("wb") as out:
        for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
            name = entry.name.encode() + b"\0"
            head = _header(ino if entry.mode else 0, entry, name) + name
            out.write(head + _pad(len(head)))
            out.write(entry.data + _pad(len(entry.data)))
