"""Writing boot configs into a site's TFTP root.

A TFTP server may open a file at any moment, so every write goes to a temporary file in the same directory,
is fsynced, and is renamed over the target: a client sees the old file or the new one, never half of one.

At a site that discovers unknown machines, every MAC known to inventory has a per-MAC local-boot file
(``render_local``) wherever no install's file is: those are created only where nothing is (a hard link of the
temporary file, which never replaces), and removed only when the file is still exactly one of them.
"""

import contextlib
import os
import tempfile
from pathlib import Path

from provisioner.pxe.bootconfig import (
    DISCOVERY_NOTE,
    GRUB_DEFAULT,
    GRUB_DIR,
    PXELINUX_DEFAULT,
    PXELINUX_DIR,
    BootEntry,
    DiscoveryBoot,
    Loader,
    render,
    render_grub_default,
    render_local,
    render_pxelinux_default,
    tftp_path,
)
from provisioner.pxe.mac import MacAddressError, normalise_mac

TFTP_LOADERS = (Loader.PXELINUX, Loader.GRUB)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path, text: str) -> str:
    """A fsynced temporary file holding `text`, readable by tftpd, beside `path`; its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(text.encode())
            tmp.flush()
            os.fsync(tmp.fileno())
        # mkstemp creates 0600; tftpd drops to an unprivileged user and must be able to read the file.
        os.chmod(tmp_name, 0o644)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return tmp_name


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a concurrent reader sees either the old or the new content."""
    tmp_name = _temporary(path, text)
    try:
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    # The rename lives in the directory: without this a power cut can bring back the old file.
    _fsync_dir(path.parent)


def atomic_create(path: Path, text: str) -> bool:
    """Create `path` holding `text` unless a file is there already, which is left as it is (an install's config
    written a moment ago must win); False then. A hard link never replaces, so there is no window between a
    check and the write."""
    tmp_name = _temporary(path, text)
    try:
        os.link(tmp_name, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp_name)
    _fsync_dir(path.parent)
    return True


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


def write_defaults(tftp_root: str | os.PathLike[str], discovery: DiscoveryBoot | None = None) -> list[Path]:
    """Write the fallback configs: the local disk, so an unknown or finished machine never installs; with
    `discovery`, the memory OS that registers an unknown machine."""
    root = Path(tftp_root)
    written = []
    for name, text in _defaults(discovery):
        atomic_write(root / name, text)
        written.append(root / name)
    return written


def _defaults(discovery: DiscoveryBoot | None) -> tuple[tuple[str, str], ...]:
    return (
        (PXELINUX_DEFAULT, render_pxelinux_default(discovery)),
        (GRUB_DEFAULT, render_grub_default(discovery)),
    )


def sync_defaults(tftp_root: str | os.PathLike[str], discovery: DiscoveryBoot | None) -> list[Path]:
    """Bring the defaults in line with `discovery`, writing only those that differ; the paths written. Without
    `discovery` only a default that discovers is put back to the local disk: a root without defaults stays so
    (the PXE server's setup writes them, docs/pxe-server.md)."""
    root = Path(tftp_root)
    written = []
    for name, text in _defaults(discovery):
        path = root / name
        try:
            current = path.read_text(errors="replace")
        except FileNotFoundError:
            current = None
        if current == text or (discovery is None and (current is None or DISCOVERY_NOTE not in current)):
            continue
        atomic_write(path, text)
        written.append(path)
    return written


def write_local(tftp_root: str | os.PathLike[str], mac: str) -> list[Path]:
    """Put `mac`'s local-boot files in place of whatever per-MAC file it has (an ended install's, at a site that
    discovers): replaced atomically, so the machine is never without one. The paths written (none when they
    are in place already)."""
    written = []
    for loader in TFTP_LOADERS:
        path = Path(tftp_root) / tftp_path(loader, mac)
        text = render_local(loader, mac)
        if _read(path) != text:
            atomic_write(path, text)
            written.append(path)
    return written


def ensure_local(tftp_root: str | os.PathLike[str], mac: str) -> list[Path]:
    """Create `mac`'s local-boot files where it has no per-MAC file at all; never replaces one (an active
    install's stays). The paths created."""
    created = []
    for loader in TFTP_LOADERS:
        path = Path(tftp_root) / tftp_path(loader, mac)
        if not path.exists() and atomic_create(path, render_local(loader, mac)):
            created.append(path)
    return created


def remove_local(tftp_root: str | os.PathLike[str], mac: str) -> list[Path]:
    """Remove `mac`'s per-MAC files that are exactly its local-boot files, and nothing else (an install's file
    stays). The paths removed."""
    removed = []
    for loader in TFTP_LOADERS:
        path = Path(tftp_root) / tftp_path(loader, mac)
        expected = render_local(loader, mac)
        if _read(path) != expected:
            continue
        # Moved aside first and checked there: an install that replaced it meanwhile gets its file back.
        aside = path.with_name(f".{path.name}.{os.getpid()}.removing")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            continue
        if _read(aside) == expected:
            removed.append(path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
        os.unlink(aside)
        _fsync_dir(path.parent)
    return removed


def local_macs(tftp_root: str | os.PathLike[str]) -> set[str]:
    """The MACs that have a local-boot file of ours (either loader's) in the root."""
    root = Path(tftp_root)
    found = set()
    for loader, prefix in ((Loader.PXELINUX, "01-"), (Loader.GRUB, "grub.cfg-01-")):
        directory = PXELINUX_DIR if loader is Loader.PXELINUX else GRUB_DIR
        for path in root.glob(f"{directory}/{prefix}*"):
            try:
                mac = normalise_mac(path.name.removeprefix(prefix))
            except MacAddressError:
                continue
            if _read(path) == render_local(loader, mac):
                found.add(mac)
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return None
