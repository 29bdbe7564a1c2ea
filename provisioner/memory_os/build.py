"""Build the memory OS: a Debian kernel and an initramfs that unpacks a debootstrapped root into tmpfs and runs the
agent. `python -m provisioner.memory_os.build --output <tftp root>` or `manage.py build_memory_os`.

Needs root (debootstrap, chroot) and the Debian tools debootstrap, apt-get, dpkg-deb, depmod, tar and xz. The kernel
and a static busybox come from Debian packages fetched with `apt-get download`, never from the build host's /boot,
so the result does not depend on what the host happens to run.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from provisioner.agent.build import build as build_agent
from provisioner.memory_os import cpio
from provisioner.pxe.stock import stock_profile

HERE = Path(__file__).resolve().parent
AGENT_DIR = HERE.parent / "agent"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
KERNEL_META_PACKAGE = "linux-image-amd64"
PROFILE = "memory-os-image"

# NICs found in servers and in QEMU; each is loaded by name in stage 1 even if coldplug would find it.
NIC_MODULES = ("e1000", "e1000e", "igb", "ixgbe", "i40e", "tg3", "bnx2", "r8169", "virtio_net", "virtio_pci")
# Disks and controllers the agent writes to, and the filesystems it mounts as the target root (ext4, xfs, btrfs)
# or creates (vfat for an ESP). Coldplug by modalias loads what the hardware needs from this set.
STORAGE_MODULES = (
    "ahci", "ata_piix", "sd_mod", "sr_mod", "virtio_blk", "virtio_scsi", "nvme", "megaraid_sas", "mpt3sas",
    "md_mod", "raid0", "raid1", "raid10", "raid456", "dm_mod",
)  # fmt: skip
FS_MODULES = ("ext4", "xfs", "btrfs", "vfat", "nls_cp437", "nls_iso8859_1", "efivarfs", "crc32c_generic", "loop")
# The BMC in-band (/dev/ipmi0), for commissioning's BMC address and create_bmc_user: KCS/SMIC/BT through
# ipmi_si, SMBus (SSIF) BMCs of some AMD and Arm servers through ipmi_ssif.
IPMI_MODULES = ("ipmi_si", "ipmi_devintf", "ipmi_ssif")

# Not needed to run the agent, and together more than half of the root: the memory OS never installs packages,
# reads manuals, or names devices from the hardware database.
STRIP = (
    "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "usr/share/bash-completion",
    "usr/lib/udev/hwdb.d", "usr/lib/udev/hwdb.bin", "var/cache/apt", "var/lib/apt/lists", "var/cache/debconf",
    "var/log", "usr/bin/perl", "usr/lib/x86_64-linux-gnu/perl-base", "usr/share/perl5",
    "usr/lib/python3.11/pydoc_data", "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/lib2to3",
    "usr/lib/python3.11/idlelib", "usr/lib/python3.11/tkinter", "usr/lib/python3.11/turtledemo",
)  # fmt: skip

AGENT_PATH = "usr/lib/provisioner/provisioner-agent.pyz"


class BuildError(Exception):
    pass


@dataclass(frozen=True)
class Result:
    directory: Path  # the cache entry: vmlinuz, initramfs.img, manifest.json
    manifest: dict
    seconds: float
    cached: bool

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initramfs.img"


def _run(argv: list[str], **kwargs) -> str:
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)
    except FileNotFoundError:
        raise BuildError(f"{argv[0]} is not installed (run .ci/e2e-setup as root)") from None
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or exc.stdout or "").strip().splitlines()[-15:])
        raise BuildError(f"{' '.join(argv[:3])} failed with status {exc.returncode}:\n{tail}") from None
    return done.stdout


def package_list(path: Path = HERE / "packages.txt") -> list[str]:
    names = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [name for name in names if name]


def kernel_package() -> tuple[str, str]:
    """The versioned kernel package the meta package points at, and its candidate version."""
    depends = _run(["apt-cache", "depends", KERNEL_META_PACKAGE])
    match = re.search(r"Depends: (linux-image-\S+)", depends)
    if match is None:
        raise BuildError(f"{KERNEL_META_PACKAGE} depends on no kernel image; run apt-get update")
    name = match.group(1)
    policy = _run(["apt-cache", "policy", name])
    version = re.search(r"Candidate: (\S+)", policy)
    if version is None or version.group(1) == "(none)":
        raise BuildError(f"no candidate version of {name}; run apt-get update")
    return name, version.group(1)


def inputs_digest(packages: list[str], kernel: tuple[str, str], suite: str, mirror: str) -> str:
    """What the result depends on: a change to any of these makes a new cache entry."""
    digest = hashlib.sha256()
    for part in (suite, mirror, *kernel, *packages):
        digest.update(part.encode() + b"\0")
    sources = [*sorted(HERE.iterdir()), *sorted(AGENT_DIR.rglob("*.py"))]
    for path in sources:
        if path.is_file() and path.suffix != ".pyc":
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def download_package(package: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    # apt's sandbox user cannot write into a root-owned temporary directory; downloading as root is what we want.
    _run(["apt-get", "download", "-o", "APT::Sandbox::User=root", package], cwd=into)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise BuildError(f"apt-get download {package} left no .deb")
    target = into / package
    _run(["dpkg-deb", "-x", str(debs[-1]), str(target)])
    return target


def debootstrap(root: Path, packages: list[str], suite: str, mirror: str) -> None:
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(root), mirror])
    # debootstrap installs the release as it shipped; the security and point-release updates are a second step.
    security = mirror.rstrip("/").removesuffix("/debian") + "/debian-security"
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\ndeb {security} {suite}-security main\n"
    )
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    _run(["chroot", str(root), "apt-get", "-q", "update"], env=env)
    _run(["chroot", str(root), "apt-get", "-q", "-y", "--no-install-recommends", "dist-upgrade"], env=env)
    _run(["chroot", str(root), "apt-get", "clean"], env=env)


def installed_packages(root: Path) -> list[dict[str, str]]:
    out = _run(["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W", "-f", "${Package}\t${Version}\n"])
    return [dict(zip(("name", "version"), line.split("\t"), strict=True)) for line in out.splitlines() if line]


def strip(root: Path) -> None:
    for relative in STRIP:
        path = root / relative
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    # Docs go, but each package's copyright file stays: the image is still a redistribution of Debian.
    doc = root / "usr/share/doc"
    for entry in doc.glob("*/*"):
        if entry.name != "copyright":
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    zoneinfo = root / "usr/share/zoneinfo"
    if zoneinfo.is_dir():
        for entry in zoneinfo.iterdir():
            if entry.name not in ("UTC", "Etc"):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for directory in ("var/cache/apt", "var/lib/apt/lists", "var/log"):
        (root / directory).mkdir(parents=True, exist_ok=True)


def module_closure(modules_dir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Paths (relative to modules_dir) of `wanted` and everything they depend on, per modules.dep and softdeps,
    each after its dependencies: the order in which insmod can load them."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[_module_name(path)] = path
    aliases: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.alias").read_text().splitlines():
        words = line.replace("-", "_").split()
        if len(words) == 3 and words[0] == "alias" and words[2] in by_name:
            aliases.setdefault(words[1], []).append(by_name[words[2]])
    for line in (modules_dir / "modules.softdep").read_text().splitlines():
        # "softdep ext4 pre: crc32c": ext4 loads without it, then cannot mount a filesystem with metadata
        # checksums. The names there may be aliases (crc32c is crc32c_generic or crc32c_intel).
        words = line.replace("-", "_").split()
        if len(words) > 2 and words[0] == "softdep" and words[1] in by_name:
            for word in words[2:]:
                deps[by_name[words[1]]] += [by_name[word]] if word in by_name else aliases.get(word, [])
    missing = [name for name in wanted if name not in by_name]
    order: list[str] = []

    def visit(path: str, trail: frozenset[str]) -> None:
        if path in order or path in trail:
            return
        for dep in deps.get(path, []):
            visit(dep, trail | {path})
        order.append(path)

    for name in wanted:
        if name in by_name:
            visit(by_name[name], frozenset())
    builtin = (modules_dir / "modules.builtin").read_text()
    really_missing = [name for name in missing if f"/{name}.ko" not in builtin.replace("-", "_")]
    if really_missing:
        raise BuildError(f"the kernel has no module {', '.join(really_missing)}")
    return order


def _module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def add_kernel_modules(root: Path, kernel_tree: Path, version: str) -> list[str]:
    source = kernel_tree / "lib/modules" / version
    _run(["depmod", "-b", str(kernel_tree), version])
    chosen = module_closure(source, NIC_MODULES + STORAGE_MODULES + FS_MODULES + IPMI_MODULES)
    target = root / "lib/modules" / version
    for relative in chosen:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, target / relative)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        shutil.copy2(source / name, target / name)
    _run(["depmod", "-b", str(root), version])
    return sorted(_module_name(p) for p in chosen)


def add_provisioner_files(root: Path) -> None:
    build_agent(root / AGENT_PATH, interpreter="/usr/bin/python3")
    shutil.copy2(HERE / "stage2", root / "sbin/provisioner-init")
    (root / "usr/share/provisioner").mkdir(parents=True, exist_ok=True)
    shutil.copy2(HERE / "udhcpc.script", root / "usr/share/provisioner/udhcpc.script")
    # Debian's busybox package installs no applet links; these are the ones stage 2 and the agent call by name.
    local = root / "usr/local/sbin"
    local.mkdir(parents=True, exist_ok=True)
    for applet in ("udhcpc", "reboot", "poweroff", "halt"):
        link = local / applet
        if not link.exists():
            link.symlink_to("/usr/bin/busybox")
    (root / "etc/hostname").write_text("memory-os\n")
    (root / "etc/fstab").write_text("# the memory OS root is a tmpfs mounted by its initramfs\n")


def pack_root(root: Path, output: Path) -> None:
    excludes = [f"--exclude=./{d}/*" for d in ("dev", "proc", "sys", "run", "tmp")]
    with output.open("wb") as out:
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "--sort=name", "-C", str(root), *excludes, "-cf", "-", "."],
            stdout=subprocess.PIPE,
        )
        # busybox's xz decoder knows CRC32 but not xz's default CRC64 check.
        xz = subprocess.run(["xz", "-T0", "-6", "--check=crc32", "-c"], stdin=tar.stdout, stdout=out, check=False)
        tar.stdout.close()
        if tar.wait() != 0 or xz.returncode != 0:
            raise BuildError("packing the root failed")


def write_initramfs(output: Path, busybox: Path, root_archive: Path) -> None:
    init = (HERE / "init").read_text().replace("__NIC_MODULES__", " ".join(NIC_MODULES))
    entries = [
        cpio.directory("bin"),
        cpio.directory("dev"),
        cpio.char_device("dev/console", 5, 1),
        cpio.directory("proc"),
        cpio.directory("sys"),
        cpio.directory("newroot"),
        cpio.file("bin/busybox", busybox.read_bytes(), 0o755),
        cpio.file("init", init.encode(), 0o755),
        cpio.file("root.tar.xz", root_archive.read_bytes(), 0o644),
    ]
    cpio.write(output, entries)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(cache_dir: Path, *, suite: str = SUITE, mirror: str = MIRROR, force: bool = False, log=print) -> Result:
    """Build the memory OS into `cache_dir/<inputs digest>/`, or reuse that entry when it is complete."""
    started = time.monotonic()
    packages = package_list()
    kernel = kernel_package()
    digest = inputs_digest(packages, kernel, suite, mirror)
    entry = cache_dir / digest
    manifest_path = entry / "manifest.json"
    if manifest_path.exists() and not force:
        log(f"memory OS {digest} is cached in {entry}")
        return Result(entry, json.loads(manifest_path.read_text()), time.monotonic() - started, cached=True)
    if os.geteuid() != 0:
        raise BuildError("building the memory OS needs root (debootstrap and chroot)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        # A second build of the same inputs (two test runs, a test and the command) waits and reuses the first's.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest_path.exists() and not force:
            log(f"memory OS {digest} was built meanwhile in {entry}")
            return Result(entry, json.loads(manifest_path.read_text()), time.monotonic() - started, cached=True)
        return _build(cache_dir, entry, digest, packages, kernel, suite, mirror, started, log)


def _build(
    cache_dir: Path,
    entry: Path,
    digest: str,
    packages: list[str],
    kernel: tuple[str, str],
    suite: str,
    mirror: str,
    started: float,
    log,
) -> Result:
    with tempfile.TemporaryDirectory(prefix="memory-os.", dir=cache_dir) as tmp:
        work = Path(tmp)
        root = work / "root"
        log(f"debootstrap {suite} (minbase + {len(packages)} packages) from {mirror}")
        debootstrap(root, packages, suite, mirror)
        contents = installed_packages(root)
        strip(root)
        log(f"kernel {kernel[0]} {kernel[1]}")
        kernel_tree = download_package(kernel[0], work / "debs")
        versions = sorted(p.name for p in (kernel_tree / "lib/modules").iterdir())
        if len(versions) != 1:
            raise BuildError(f"{kernel[0]} holds modules for {versions}, expected one kernel")
        version = versions[0]
        modules = add_kernel_modules(root, kernel_tree, version)
        add_provisioner_files(root)
        root_bytes = sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        log(f"root: {root_bytes / 2**20:.1f} MiB, packing")
        pack_root(root, work / "root.tar.xz")
        busybox = download_package("busybox-static", work / "debs") / "bin/busybox"
        staged = work / "out"
        staged.mkdir()
        shutil.copy2(kernel_tree / "boot" / f"vmlinuz-{version}", staged / "vmlinuz")
        write_initramfs(staged / "initramfs.img", busybox, work / "root.tar.xz")
        manifest = {
            "inputs": digest,
            "suite": suite,
            "mirror": mirror,
            "kernel": {"package": kernel[0], "version": kernel[1], "release": version},
            "root_bytes": root_bytes,
            "modules": modules,
            "packages": contents,
            "files": {
                name: {"sha256": sha256_file(staged / name), "bytes": (staged / name).stat().st_size}
                for name in ("vmlinuz", "initramfs.img")
            },
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if entry.exists():
            shutil.rmtree(entry)
        staged.rename(entry)
    prune(cache_dir, keep=entry)
    return Result(entry, manifest, time.monotonic() - started, cached=False)


def prune(cache_dir: Path, keep: Path, entries: int = 3) -> None:
    """Drop all but the newest few builds (about 42 MiB each): older inputs are rarely asked for again."""
    builds = [p for p in cache_dir.iterdir() if p.is_dir() and (p / "manifest.json").exists() and p != keep]
    builds.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[entries - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def publish(result: Result, tftp_root: Path) -> list[Path]:
    """Copy kernel, initrd and manifest to where the memory-os-image profile points in `tftp_root`.

    Each file is written beside its target and renamed over it: a TFTP server may be sending the old one.
    """
    profile = stock_profile(PROFILE)
    kernel = tftp_root / str(profile["kernel"]).lstrip("/")
    initrd = tftp_root / str(profile["initrd"]).lstrip("/")
    written = []
    for source, target in (
        (result.kernel, kernel),
        (result.initrd, initrd),
        (result.directory / "manifest.json", initrd.parent / "manifest.json"),
    ):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        written.append(target)
    return written


def summary(result: Result) -> str:
    files = result.manifest["files"]
    how = "cached" if result.cached else f"built in {result.manifest['build_seconds']:.0f} s"
    return (
        f"memory OS {result.manifest['inputs']} ({how}): kernel {result.manifest['kernel']['release']} "
        f"{files['vmlinuz']['bytes'] / 2**20:.1f} MiB, initramfs {files['initramfs.img']['bytes'] / 2**20:.1f} MiB, "
        f"root {result.manifest['root_bytes'] / 2**20:.0f} MiB unpacked, {len(result.manifest['packages'])} packages"
    )


def default_cache_dir() -> Path:
    return HERE.parents[1] / "var" / "memory-os"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, action="append", default=[], help="TFTP root to publish to")
    parser.add_argument("--cache", type=Path, default=default_cache_dir(), help="build cache directory")
    parser.add_argument("--mirror", default=MIRROR)
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache holds these inputs")
    args = parser.parse_args(argv)
    try:
        result = build(args.cache, mirror=args.mirror, force=args.force)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for root in args.output:
        for path in publish(result, root):
            print(path)
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
