"""Erasing a disk's data for good: what a disk can do (probe), the ways to do it, zeroing, and reading it back.

The ways, best first: an NVMe Format with user data erase (the controller forgets every block, seconds), an ATA
secure erase (the drive overwrites itself, remapped sectors included), a discard of the whole device (fast, but
only a drive that reads zeros after TRIM returns zeros), and writing zeros. The task (tasks/erase.py) chooses
per disk and reads back what it did; a way that left data readable is followed by zeroing.

`RealEraser` drives nvme-cli, hdparm and blkdiscard; `SandboxEraser` works on the sandbox's disk image files:
what machine.json declares of a disk ("transport", "nvme_format", "ata_security", "discard", "erase_zeroes")
says what it can do, the commands a real disk would get are recorded in DIR/commands.log, and an erase punches
the whole file into a hole (fallocate PUNCH_HOLE) unless "erase_zeroes" is false (a drive whose erase leaves its
old data readable, which the read-back must catch).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import mmap
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.agent import facts, parsers
from provisioner.agent.results import TaskFailed
from provisioner.agent.tools import Completed

MIB = 1024 * 1024
# Zeroing writes this much per call, and makes the kernel write it out every SYNC_EVERY bytes so the progress
# reported is the disk's, not the page cache's.
CHUNK = 4 * MIB
SYNC_EVERY = 1024 * MIB
# How much is read back at the start, the middle and the end of a disk.
VERIFY_SPAN = MIB
# A known temporary ATA password: if the machine loses power mid-erase, the drive stays locked with it and a
# technician can unlock it (`hdparm --user-master u --security-disable provisioner-erase /dev/sdX`). It protects
# nothing: a successful erase clears it.
ATA_PASSWORD = "provisioner-erase"
# NVMe Format with user data erase takes seconds on most drives, tens of minutes on a few large ones.
NVME_FORMAT_TIMEOUT_S = 3 * 3600
DISCARD_TIMEOUT_S = 3 * 3600
# ATA drives estimate their own erase time; past "more than 508 min" the drive does not say.
ATA_DEFAULT_MINUTES = 12 * 60
BLKFLSBUF = 0x1261
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


class EraseFailed(Exception):
    """A way of erasing did not work on this disk; the message says why, for the report and a technician."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.message = message
        self.output = output


@dataclass
class Probe:
    """What a disk can do."""

    transport: str
    nvme_format: bool = False
    lba_format: int | None = None
    ata: dict = field(default_factory=dict)  # parsers.hdparm_security, {} when the disk is not ATA
    discard: bool = False
    why_not_nvme: str = ""


class Eraser:
    def probe(self, name: str, device: str) -> Probe:
        raise NotImplementedError

    def nvme_format(self, device: str, probe: Probe) -> None:
        raise NotImplementedError

    def ata_secure_erase(self, device: str, probe: Probe) -> None:
        raise NotImplementedError

    def discard(self, device: str) -> None:
        raise NotImplementedError


Runner = Callable[..., Completed]


class RealEraser(Eraser):
    def __init__(self, run: Runner, sys_root: Path = Path("/sys")):
        self._run = run
        self.sys_root = sys_root

    def _tool(self, argv: list[str], timeout: float) -> Completed:
        try:
            return self._run(argv, timeout)
        except TaskFailed as exc:  # missing or hung: this way is not available, another may be
            raise EraseFailed(exc.message) from None

    def probe(self, name: str, device: str) -> Probe:
        found = Probe(facts.transport(self.sys_root, name))
        try:
            found.discard = int((self.sys_root / "block" / name / "queue/discard_max_bytes").read_text()) > 0
        except (OSError, ValueError):
            found.discard = False
        if found.transport == "nvme":
            self._probe_nvme(device, found)
        elif found.transport == "sata":
            try:
                done = self._tool(["hdparm", "-I", device], 60)
                found.ata = parsers.hdparm_security(done.output) if done.returncode == 0 else {}
            except EraseFailed:
                found.ata = {}
        return found

    def _probe_nvme(self, device: str, found: Probe) -> None:
        try:
            ctrl = self._tool(["nvme", "id-ctrl", device, "--output-format=json"], 60)
            ns = self._tool(["nvme", "id-ns", device, "--output-format=json"], 60)
        except EraseFailed as exc:
            found.why_not_nvme = exc.message
            return
        if ctrl.returncode != 0 or not parsers.nvme_can_format(ctrl.output):
            found.why_not_nvme = "the NVMe controller does not support Format NVM"
            return
        # nvme-cli formats every namespace with LBA format 0 when it is given none and the controller formats all
        # namespaces together: a disk set up with 4 KiB sectors would come back with 512-byte ones.
        found.lba_format = parsers.nvme_lba_format(ns.output) if ns.returncode == 0 else None
        if found.lba_format is None:
            found.why_not_nvme = "the NVMe namespace's LBA format could not be read"
            return
        found.nvme_format = True

    def nvme_format(self, device: str, probe: Probe) -> None:
        # --force: no ten-second pause for a person to press Ctrl-C (it also skips nvme-cli's exclusive open, which
        # the task has already checked).
        argv = ["nvme", "format", device, "--ses=1", f"--lbaf={probe.lba_format}", "--force",
                f"--timeout={NVME_FORMAT_TIMEOUT_S * 1000}"]  # fmt: skip
        done = self._tool(argv, NVME_FORMAT_TIMEOUT_S + 60)
        if done.returncode != 0:
            raise EraseFailed(f"nvme format failed: {_last(done.output)}", done.output)

    def ata_secure_erase(self, device: str, probe: Probe) -> None:
        enhanced = bool(probe.ata.get("enhanced"))
        minutes = probe.ata.get("enhanced_minutes" if enhanced else "erase_minutes") or ATA_DEFAULT_MINUTES
        done = self._tool(["hdparm", "--user-master", "u", "--security-set-pass", ATA_PASSWORD, device], 60)
        if done.returncode != 0:
            raise EraseFailed(f"hdparm could not set the temporary ATA password: {_last(done.output)}", done.output)
        erase = "--security-erase-enhanced" if enhanced else "--security-erase"
        try:
            done = self._tool(["hdparm", "--user-master", "u", erase, ATA_PASSWORD, device], minutes * 120 + 600)
        except EraseFailed:
            self._unlock(device)
            raise
        if done.returncode != 0:
            self._unlock(device)
            raise EraseFailed(f"ATA secure erase failed: {_last(done.output)}", done.output)

    def _unlock(self, device: str) -> None:
        """Take the temporary password off a drive whose erase did not run, so it is not left locked."""
        try:
            self._tool(["hdparm", "--user-master", "u", "--security-disable", ATA_PASSWORD, device], 60)
        except EraseFailed:
            pass

    def discard(self, device: str) -> None:
        done = self._tool(["blkdiscard", device], DISCARD_TIMEOUT_S)
        if done.returncode != 0:
            raise EraseFailed(f"blkdiscard failed: {_last(done.output)}", done.output)


def _last(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


class SandboxEraser(Eraser):
    def __init__(self, root: Path, record: Callable[[list[str]], None]):
        self.root = root
        self.record = record

    def _declared(self, name: str) -> dict:
        try:
            machine = json.loads((self.root / "machine.json").read_text())
        except FileNotFoundError:
            machine = {}
        declared = machine.get("disks", {}).get(name, {})
        return declared if isinstance(declared, dict) else {}

    def probe(self, name: str, device: str) -> Probe:
        declared = self._declared(name)
        found = Probe(str(declared.get("transport") or facts.sandbox_transport(name)))
        found.discard = bool(declared.get("discard", True))
        if found.transport == "nvme":
            found.nvme_format = bool(declared.get("nvme_format", False))
            found.lba_format = 0
            found.why_not_nvme = "" if found.nvme_format else "the NVMe controller does not support Format NVM"
        security = declared.get("ata_security")
        if found.transport == "sata" and isinstance(security, dict):
            found.ata = {**parsers.hdparm_security(""), "present": True, "supported": True, **security}
        return found

    def _erase(self, device: str) -> None:
        if self._declared(Path(device).name.removesuffix(".img")).get("erase_zeroes", True):
            punch(device)

    def nvme_format(self, device: str, probe: Probe) -> None:
        self.record(["nvme", "format", device, "--ses=1", f"--lbaf={probe.lba_format}", "--force"])
        self._erase(device)

    def ata_secure_erase(self, device: str, probe: Probe) -> None:
        erase = "--security-erase-enhanced" if probe.ata.get("enhanced") else "--security-erase"
        self.record(["hdparm", "--user-master", "u", "--security-set-pass", ATA_PASSWORD, device])
        self.record(["hdparm", "--user-master", "u", erase, ATA_PASSWORD, device])
        self._erase(device)

    def discard(self, device: str) -> None:
        self.record(["blkdiscard", device])
        self._erase(device)


# -- zeroing and reading back -----------------------------------------------------------------------------------


def _fallocate():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
    return libc.fallocate


def punch(path: str) -> None:
    """Make a whole (sandbox image) file one hole: it reads as zeros and keeps its size. A file system that
    cannot punch holes gets its data zeroed instead."""
    fd = os.open(path, os.O_WRONLY)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if _fallocate()(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size) != 0:
            if ctypes.get_errno() not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), path)
            for start, end in data_extents(fd, size):
                _write_zeros(fd, start, end, lambda n: None)
        os.fsync(fd)
    finally:
        os.close(fd)


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The (start, end) ranges that may hold data: a sparse file's holes already read as zeros. A block device
    is one range (the kernel answers SEEK_DATA with the offset and SEEK_HOLE with the end)."""
    extents = []
    offset = 0
    try:
        while offset < size:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            end = min(size, os.lseek(fd, start, os.SEEK_HOLE))
            extents.append((start, end))
            offset = end
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: no data past offset; anything else: cannot tell, so all of it
            return [(0, size)]
    return extents


_ZEROS = bytes(CHUNK)


def _write_zeros(fd: int, start: int, end: int, advance: Callable[[int], None]) -> None:
    written_since_sync = 0
    offset = start
    while offset < end:
        length = min(CHUNK, end - offset)
        os.pwrite(fd, memoryview(_ZEROS)[:length], offset)
        offset += length
        written_since_sync += length
        if written_since_sync >= SYNC_EVERY:
            os.fdatasync(fd)
            written_since_sync = 0
        advance(length)


def zero(fd: int, size: int, progress: Callable[[int, int], None]) -> None:
    """Write zeros over everything that may hold data; `progress(done, total)` after each chunk (it may raise to
    stop)."""
    extents = data_extents(fd, size)
    total = sum(end - start for start, end in extents)
    done = [0]

    def advance(length: int) -> None:
        done[0] += length
        progress(done[0], total)

    for start, end in extents:
        _write_zeros(fd, start, end, advance)
    os.fsync(fd)


def verify_offsets(size: int) -> list[int]:
    """Where the read-back looks: the first, the middle and the last MiB (aligned to a MiB, as direct I/O wants)."""
    middle = (size // 2) // MIB * MIB
    return sorted({0, min(middle, max(0, size - VERIFY_SPAN)), max(0, size - VERIFY_SPAN)})


def first_nonzero(path: str) -> int | None:
    """The offset of the first byte that is not zero in the spans verify_offsets names, or None.

    A block device is read past the page cache (direct I/O, after BLKFLSBUF): pages cached before the erase
    would show the old data, or hide that the device kept it."""
    block = stat.S_ISBLK(os.stat(path).st_mode)
    fd = _open_for_reading(path, block)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        buffer = mmap.mmap(-1, VERIFY_SPAN)  # page-aligned, as O_DIRECT requires
        for offset in verify_offsets(size):
            length = min(VERIFY_SPAN, size - offset)
            got = os.preadv(fd, [memoryview(buffer)[:length]], offset)
            data = buffer[:got]
            if data.count(0) != got:
                return offset + next(i for i, byte in enumerate(data) if byte)
        return None
    finally:
        os.close(fd)


def _open_for_reading(path: str, block: bool) -> int:
    if not block:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return fd
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, BLKFLSBUF)
    except OSError:
        pass
    os.close(fd)
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        return os.open(path, os.O_RDONLY)
