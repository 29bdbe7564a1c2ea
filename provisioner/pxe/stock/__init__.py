"""Stock OS profiles shipped with provisioner, as plain data the OSProfile table is seeded from.

Each template lives beside this module as a data file so that it reads (and diffs) as the installer sees it.
Kernel and initrd paths are from a site's TFTP root; `kernel_args` are the profile's own arguments,
appended after the method's (see provisioner.pxe.answers.kernel_cmdline).
"""

from importlib import resources

_SERIAL = "console=tty0 console=ttyS0,115200n8"


def _template(file_name: str) -> str:
    return resources.files(__name__).joinpath(file_name).read_text(encoding="utf-8")


# cloud-init's NoCloud meta-data: not admin-editable, since only the instance id and host name belong there.
META_DATA_TEMPLATE = _template("ubuntu-24.04-autoinstall.meta-data.j2")


def _profile(
    name: str,
    method: str,
    *,
    kernel: str,
    initrd: str,
    kernel_args: str,
    template: str,
    target_disk: str = "/dev/sda",
    image_url: str = "",
    image_sha256: str = "",
    legacy_anaconda: bool = False,
) -> dict[str, object]:
    return {
        "name": name,
        "method": method,
        "kernel": kernel,
        "initrd": initrd,
        "kernel_args": kernel_args,
        "target_disk": target_disk,
        "template": template,
        "image_url": image_url,
        "image_sha256": image_sha256,
        "legacy_anaconda": legacy_anaconda,
    }


def stock_profiles() -> list[dict[str, object]]:
    """A fresh list of the stock profiles (a new copy each call, so callers may edit what they get)."""
    return [
        _profile(
            "ubuntu-24.04-autoinstall",
            "autoinstall",
            kernel="/images/ubuntu-24.04/vmlinuz",
            initrd="/images/ubuntu-24.04/initrd",
            # casper fetches the live-server ISO named by url= and runs the installer from RAM.
            kernel_args="url=https://releases.ubuntu.com/24.04/ubuntu-24.04.3-live-server-amd64.iso "
            f"root=/dev/ram0 ramdisk_size=1500000 {_SERIAL}",
            template=_template("ubuntu-24.04-autoinstall.user-data.j2"),
        ),
        _profile(
            "debian-12-preseed",
            "preseed",
            kernel="/images/debian-12/linux",
            initrd="/images/debian-12/initrd.gz",
            # With auto=true the installer asks locale and keymap before the preseed file arrives.
            kernel_args=f"locale=en_US.UTF-8 keymap=us {_SERIAL}",
            template=_template("debian-12-preseed.cfg.j2"),
        ),
        _profile(
            "rocky-9-kickstart",
            "kickstart",
            kernel="/images/rocky-9/vmlinuz",
            initrd="/images/rocky-9/initrd.img",
            kernel_args=f"inst.repo=https://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os/ inst.text {_SERIAL}",
            template=_template("rocky-9-kickstart.ks.j2"),
        ),
        _profile(
            "centos-7-kickstart",
            "kickstart",
            kernel="/images/centos-7/vmlinuz",
            initrd="/images/centos-7/initrd.img",
            kernel_args=f"inst.repo=https://vault.centos.org/7.9.2009/os/x86_64/ inst.text {_SERIAL}",
            template=_template("centos-7-kickstart.ks.j2"),
            legacy_anaconda=True,
        ),
        _profile(
            "memory-os-image",
            "image",
            kernel="/images/memory-os/vmlinuz",
            initrd="/images/memory-os/initramfs.img",
            kernel_args=_SERIAL,
            # The agent streams the image to the disk; a site sets the image and its checksum before use.
            template="",
            image_url="",
            image_sha256="",
        ),
    ]


STOCK_PROFILES = stock_profiles()
STOCK_PROFILE_NAMES = tuple(p["name"] for p in STOCK_PROFILES)


def stock_profile(name: str) -> dict[str, object]:
    """One stock profile by name (a copy); KeyError names the unknown profile."""
    for profile in stock_profiles():
        if profile["name"] == name:
            return profile
    raise KeyError(f"no stock profile named {name!r}")
