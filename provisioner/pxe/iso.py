"""Boot ISOs for virtual media: a profile's kernel and initrd with one install's command line, on a CD that boots
by BIOS and by UEFI. Built with grub-mkrescue (Debian: grub-common, grub-pc-bin, grub-efi-amd64-bin, xorriso,
mtools) into the site's TFTP root, beside the per-MAC configs it stands in for, and written as they are: a
temporary file in the same directory, fsynced, renamed over the target.

The GRUB config on the CD is the per-MAC GRUB config a network boot gets (provisioner.pxe.bootconfig), so the
kernel sees the same command line, BOOTIF included, whichever way it came; only its paths point into the CD.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from provisioner.pxe.bootconfig import BootEntry, Loader, render
from provisioner.pxe.tftp import _fsync_dir

#: Where in a site's TFTP root the ISOs go: one per install, removed when it ends.
MEDIA_DIR = "virtual-media"
#: The CD's own paths.
KERNEL = "/boot/vmlinuz"
INITRD = "/boot/initrd"
VOLUME_ID = "PROVISIONER"
# grub-mkrescue builds both platforms' core images and packs the CD: about 2 s plus copying the initrd.
BUILD_TIMEOUT_S = 120
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,120}\.iso$")
PACKAGES = "grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools"


class IsoBuildError(Exception):
    """The ISO could not be built; the message says what to install or fix."""


def grub_config(*, mac: str, cmdline: str) -> str:
    """The GRUB config on the CD: the network boot's per-MAC GRUB config with the CD's paths (pure)."""
    return render(BootEntry(mac=mac, kernel=KERNEL, initrd=INITRD, cmdline=cmdline, loader=Loader.GRUB))


def media_path(tftp_root: str | os.PathLike[str], name: str) -> Path:
    """Where the ISO called ``name`` lives in a site's TFTP root; ValueError for a name that is not one of ours."""
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not an ISO name")
    return Path(tftp_root) / MEDIA_DIR / name


def source_file(tftp_root: str | os.PathLike[str], path: str, what: str) -> Path:
    """The kernel or initrd a profile names, in the TFTP root; IsoBuildError when it is a URL or missing."""
    if "://" in path:
        raise IsoBuildError(
            f"the profile's {what} is a URL ({path[:80]}); a virtual media ISO is built from files in the TFTP root"
        )
    root = Path(tftp_root).resolve()
    found = (root / path.lstrip("/")).resolve()
    if root not in found.parents:
        raise IsoBuildError(f"the profile's {what} {path!r} is outside the TFTP root")
    if not found.is_file():
        raise IsoBuildError(f"the profile's {what} {path!r} is not in the TFTP root {tftp_root}")
    return found


def build(output: Path, *, kernel: Path, initrd: Path, mac: str, cmdline: str) -> Path:
    """Write the ISO to ``output`` (replacing one there): ``kernel`` and ``initrd`` booted with ``cmdline``."""
    config = grub_config(mac=mac, cmdline=cmdline)  # checks the command line before anything is copied
    tool = shutil.which("grub-mkrescue")
    if tool is None or shutil.which("xorriso") is None or shutil.which("mformat") is None:
        raise IsoBuildError(f"building a virtual media ISO needs grub-mkrescue, xorriso and mtools ({PACKAGES})")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".iso-", dir=output.parent) as tmp:
        staging = Path(tmp) / "cd"
        (staging / "boot/grub").mkdir(parents=True)
        shutil.copyfile(kernel, staging / KERNEL.lstrip("/"))
        shutil.copyfile(initrd, staging / INITRD.lstrip("/"))
        (staging / "boot/grub/grub.cfg").write_text(config)
        built = Path(tmp) / "out.iso"
        argv = [tool, "-o", str(built), "--locales=", "--themes=", "--fonts=", "--compress=xz", str(staging),
                "--", "-volid", VOLUME_ID]  # fmt: skip
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise IsoBuildError(f"grub-mkrescue took longer than {BUILD_TIMEOUT_S} s") from None
        except subprocess.CalledProcessError as exc:
            tail = " ".join((exc.stderr or exc.stdout or "").strip().splitlines()[-3:])
            raise IsoBuildError(f"grub-mkrescue failed with status {exc.returncode}: {tail}") from None
        with built.open("rb+") as f:
            os.fsync(f.fileno())
        os.chmod(built, 0o644)
        os.replace(built, output)
    _fsync_dir(output.parent)
    return output


def remove(tftp_root: str | os.PathLike[str], name: str) -> bool:
    """Remove the ISO called ``name``; True if it was there. Removing twice is fine."""
    path = media_path(tftp_root, name)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        _fsync_dir(path.parent)
        return True
    return False
