"""Writing boot configs into a site's TFTP root.

A TFTP server may open a file at any moment, so every write goes to a temporary file in the same directory,
is fsynced, and is renamed over the target: a client sees the old file or the new one, never half of one.
"""

import contextlib
import os
import tempfile
from pathlib import Path

from provisioner.pxe.bootconfig import (
    GRUB_DEFAULT,
    PXELINUX_DEFAULT,
    BootEntry,
    Loader,
    render,
    render_grub_default,
    render_pxelinux_default,
    tftp_path,
)

TFTP_LOADERS = (Loader.PXELINUX, Loader.GRUB)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a concurrent reader sees either the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(text.encode())
            tmp.flush()
            os.fsync(tmp.fileno())
        # mkstemp creates 0600; tftpd drops to an unprivileged user and must be able to read the file.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    # The rename lives in the directory: without this a power cut can bring back the old file.
    _fsync_dir(path.parent)


def write(tftp_root: str | os.PathLike[str], entry: BootEntry) -> Path:
    """Write `entry`'s per-MAC config for its loader (pxelinux or GRUB); return the path written."""
    path = Path(tftp_root) / tftp_path(entry.loader, entry.mac)
    atomic_write(path, render(entry))
    return path


def write_all(tftp_root: str | os.PathLike[str], *, mac: str, kernel: str, initrd: str, cmdline: str) -> list[Path]:
    """Write the per-MAC config for every TFTP loader.

    The control plane rarely knows whether a machine will PXE-boot in BIOS or UEFI mode (firmware settings
    change it), so an armed install is offered to both.
    """
    return [
        write(tftp_root, BootEntry(mac=mac, kernel=kernel, initrd=initrd, cmdline=cmdline, loader=loader))
        for loader in TFTP_LOADERS
    ]


def remove(tftp_root: str | os.PathLike[str], mac: str) -> list[Path]:
    """Remove every loader's per-MAC config for `mac`; return what was removed. Removing twice is fine."""
    removed = []
    for loader in TFTP_LOADERS:
        path = Path(tftp_root) / tftp_path(loader, mac)
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        _fsync_dir(path.parent)
        removed.append(path)
    return removed


def write_defaults(tftp_root: str | os.PathLike[str]) -> list[Path]:
    """Write the fallback configs that boot the local disk, so an unknown or finished machine never installs."""
    root = Path(tftp_root)
    written = []
    for name, text in ((PXELINUX_DEFAULT, render_pxelinux_default()), (GRUB_DEFAULT, render_grub_default())):
        atomic_write(root / name, text)
        written.append(root / name)
    return written
