"""The image the end-to-end install writes: a small disk that boots by BIOS (syslinux) and by UEFI (syslinux.efi)
into a busybox "installed OS" whose only job is to prove the install and call back at first boot.

Layout (MBR): partition 1, FAT16, type EF and active, holds the boot loaders, the Debian kernel and the
responder's initramfs; partition 2, ext4 labelled "root", is the root the agent finds (the largest Linux
filesystem) and writes /etc/hostname and the network config into. Built without mounting anything: mkfs -d,
mtools and syslinux's FAT installer work on image files.

At first boot the responder loads the disk and NIC drivers, prints the disks it sees by their serials, mounts
the ext4 root read-only, prints the disk that root sits on, the host name and network config the agent wrote,
brings up the NIC named by MAC in that config with DHCP, and POSTs <base>/i/<token>/events/finished, as the
systemd unit of the agent's first_boot_callback task would. The URL comes from that task's
/etc/provisioner/first-boot on the root; for a plan without the task, from the test's helper at `e2e.firstboot=`
on its kernel command line.

Written onto a RAID 1 with metadata 1.0 (its superblock at the end of each member), every member holds the
image from sector 0: its loader boots from either disk alone, and the kernel, which assembles no array here,
reads each member's partition table directly, so LABEL=root is found on whichever disk is present.
"""

from __future__ import annotations

import hashlib
import lzma
import shutil
import subprocess
import tempfile
from pathlib import Path

from provisioner.memory_os import cpio
from provisioner.memory_os.build import download_package, kernel_package, module_closure

DRIVERS = (
    "ata_piix",
    "ahci",
    "sd_mod",
    "crc32c_generic",
    "ext4",
    "e1000",
    "e1000e",
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
)
SECTOR = 512
FAT_START, FAT_SECTORS = 2048, 32 * 2048  # 32 MiB from 1 MiB
ROOT_SECTORS = 24 * 2048

RESPONDER = r"""#!/bin/busybox sh
/bin/busybox --install /bin
export PATH=/bin
mkdir -p /proc /sys /dev /target /etc
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
say() { echo "installed-os: $*"; }
say "booted from the disk, kernel $(uname -r)"
while read -r module; do insmod "/modules/$module" 2>/dev/null; done </modules/order
# A disk's serial as its firmware reports it: SCSI VPD page 0x80 (libata fills it from ATA IDENTIFY), after its
# 4-byte header; virtio disks have a serial attribute of their own.
serial_of() {
    if [ -r "/sys/block/$1/device/vpd_pg80" ]; then
        tail -c +5 "/sys/block/$1/device/vpd_pg80" | tr -d '\000' | tr -s ' ' | sed 's/^ //; s/ $//'
    else
        cat "/sys/block/$1/serial" 2>/dev/null
    fi
}
root=""
for i in $(seq 1 30); do
    root=$(findfs LABEL=root 2>/dev/null) && break
    sleep 1
done
disks=""
for dev in /sys/block/*; do
    [ -e "$dev/device" ] && disks="$disks ${dev##*/}=$(serial_of "${dev##*/}")"
done
say "disks${disks:- none}"
[ -n "$root" ] || { say "FAILED: no root filesystem"; exec sh; }
# The partition's sysfs directory sits inside its disk's.
disk=$(basename "$(dirname "$(readlink -f "/sys/class/block/${root##*/}")")")
say "root $root on disk $disk, serial $(serial_of "$disk")"
mount -t ext4 -o ro "$root" /target || { say "FAILED: cannot mount $root"; exec sh; }
say "root $root, hostname $(cat /target/etc/hostname 2>/dev/null)"
hostname "$(cat /target/etc/hostname 2>/dev/null || echo installed)"
mac=$(cat /target/etc/netplan/*.yaml 2>/dev/null \
    | sed -n 's/.*macaddress: *"\{0,1\}\([0-9a-fA-F:]\{17\}\).*/\1/p' | head -n 1 | tr A-F a-f)
[ -n "$mac" ] || { say "FAILED: no network config matching a MAC under /etc/netplan"; exec sh; }
say "network config matches $mac"
nic=""
for i in $(seq 1 30); do
    for dev in /sys/class/net/*; do
        [ "$(cat "$dev/address")" = "$mac" ] && nic=${dev##*/}
    done
    [ -n "$nic" ] && break
    sleep 1
done
[ -n "$nic" ] || { say "FAILED: no NIC has $mac"; exec sh; }
ip link set lo up
ip link set "$nic" up
udhcpc -i "$nic" -s /dhcp.script -q -t 10 -T 3 || say "no DHCP lease on $nic"
# What the agent's first_boot_callback task left for the installed system's systemd unit.
url=$(sed -n 's/^PROVISIONER_FIRST_BOOT_URL=//p' /target/etc/provisioner/first-boot 2>/dev/null | tr -d "\"'")
if [ -n "$url" ]; then
    say "callback URL from /etc/provisioner/first-boot on the root"
else
    helper=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^e2e.firstboot=//p')
    url=$(wget -q -O - "$helper/$mac")
    say "callback URL from the test's helper"
fi
for i in $(seq 1 20); do
    wget -q -O - --post-data "message=first boot of $(hostname) on $nic ($mac)" "$url" && {
        echo
        say "first-boot callback sent"
        break
    }
    sleep 3
done
while :; do sleep 3600; done
"""

DHCP_SCRIPT = """#!/bin/sh
case "$1" in
    bound|renew)
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
        echo "installed-os: DHCP $interface $ip/${mask:-24}"
        ;;
esac
exit 0
"""

LOADER_CFG = """SERIAL 0 115200
DEFAULT installed
PROMPT 0
TIMEOUT 0
LABEL installed
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0,115200n8 e2e.firstboot={helper}
"""


def _run(*argv: str, **kwargs) -> None:
    subprocess.run(argv, check=True, capture_output=True, **kwargs)


def boot_files(cache: Path) -> tuple[Path, Path]:
    """The kernel and the responder initramfs, cached per kernel and per this file."""
    kernel = kernel_package()
    key = hashlib.sha256(Path(__file__).read_bytes() + repr(kernel).encode()).hexdigest()[:16]
    entry = cache / f"installed-os-{key}"
    if (entry / "initrd.img").exists():
        return entry / "vmlinuz", entry / "initrd.img"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="installed-os.", dir=cache) as tmp:
        work = Path(tmp)
        tree = download_package(kernel[0], work / "debs")
        busybox = download_package("busybox-static", work / "debs") / "bin/busybox"
        (version,) = (p.name for p in (tree / "lib/modules").iterdir())
        _run("depmod", "-b", str(tree), version)
        modules_dir = tree / "lib/modules" / version
        order = module_closure(modules_dir, DRIVERS)
        entries = [cpio.directory(d) for d in ("bin", "dev", "proc", "sys", "modules")]
        entries.append(cpio.char_device("dev/console", 5, 1))
        entries += [cpio.file(f"modules/{Path(p).name}", (modules_dir / p).read_bytes()) for p in order]
        entries += [
            cpio.file("modules/order", "".join(f"{Path(p).name}\n" for p in order).encode()),
            cpio.file("bin/busybox", busybox.read_bytes(), 0o755),
            cpio.file("init", RESPONDER.encode(), 0o755),
            cpio.file("dhcp.script", DHCP_SCRIPT.encode(), 0o755),
        ]
        staged = work / "out"
        staged.mkdir()
        cpio.write(staged / "initrd.img", entries)
        shutil.copy2(tree / "boot" / f"vmlinuz-{version}", staged / "vmlinuz")
        staged.rename(entry)
    for old in sorted(cache.glob("installed-os-*"), key=lambda p: p.stat().st_mtime)[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    return entry / "vmlinuz", entry / "initrd.img"


def build_disk(out_dir: Path, cache: Path, helper_url: str) -> tuple[Path, str]:
    """Write disk.img.xz into out_dir; return it and the sha256 of the raw disk (what write_image checks)."""
    vmlinuz, initrd = boot_files(cache)
    work = out_dir / "build"
    work.mkdir(parents=True, exist_ok=True)
    cfg = LOADER_CFG.format(helper=helper_url)

    fat = work / "fat.img"
    fat.unlink(missing_ok=True)
    # -h: the hidden-sector count is where syslinux's boot sector finds its partition on the disk.
    _run("mkfs.vfat", "-F", "16", "-n", "BOOT", "-h", str(FAT_START), "-C", str(fat), str(FAT_SECTORS // 2))
    (work / "syslinux.cfg").write_text(cfg)
    mtools = ["mcopy", "-i", str(fat)]
    _run("mmd", "-i", str(fat), "::/EFI", "::/EFI/BOOT")
    _run(*mtools, str(vmlinuz), "::/vmlinuz")
    _run(*mtools, str(initrd), "::/initrd.img")
    _run(*mtools, str(work / "syslinux.cfg"), "::/syslinux.cfg")
    _run(*mtools, "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi", "::/EFI/BOOT/BOOTX64.EFI")
    _run(*mtools, "/usr/lib/syslinux/modules/efi64/ldlinux.e64", "::/EFI/BOOT/ldlinux.e64")
    _run(*mtools, str(work / "syslinux.cfg"), "::/EFI/BOOT/syslinux.cfg")
    _run("syslinux", "--install", str(fat))

    tree = work / "root"
    shutil.rmtree(tree, ignore_errors=True)
    for directory in ("etc/netplan", "etc/provisioner", "root"):
        (tree / directory).mkdir(parents=True)
    (tree / "etc/hostname").write_text("image-default\n")
    (tree / "etc/os-release").write_text('NAME="provisioner e2e installed OS"\nID=e2e\n')
    root = work / "root.img"
    root.unlink(missing_ok=True)
    _run("mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(tree), str(root), f"{ROOT_SECTORS // 2}k")

    disk = work / "disk.img"
    size = (FAT_START + FAT_SECTORS + ROOT_SECTORS + 2048) * SECTOR
    with disk.open("wb") as f:
        f.truncate(size)
    layout = f"label: dos\nstart={FAT_START}, size={FAT_SECTORS}, type=ef, bootable\nstart={FAT_START + FAT_SECTORS}, size={ROOT_SECTORS}, type=83\n"  # noqa: E501
    _run("sfdisk", "--no-reread", "--no-tell-kernel", str(disk), input=layout.encode())
    with disk.open("r+b") as f:
        f.write(Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()[:440])
        for image, start in ((fat, FAT_START), (root, FAT_START + FAT_SECTORS)):
            f.seek(start * SECTOR)
            with image.open("rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
    raw = disk.read_bytes()
    compressed = out_dir / "disk.img.xz"
    compressed.write_bytes(lzma.compress(raw, preset=6))
    return compressed, hashlib.sha256(raw).hexdigest()
