"""bootloader against sandbox targets shaped like the images it meets (a busybox image without chroot tools, a
Debian-like with update-initramfs and GRUB, a Red Hat-like with dracut on a UEFI machine), and its chroot with real
bind mounts into a minimal root when the tests run as root."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from provisioner.agent.context import Context
from provisioner.agent.host import Completed, RealHost, SandboxHost
from provisioner.agent.results import TaskFailed
from provisioner.agent.tasks import DESTRUCTIVE, TASKS, boot, run_task
from tests.unit.agent.conftest import MIB, RecordingChannel, make_disk

PARAMS = {"device": "/dev/md0", "members": ["/dev/sda", "/dev/sdb"]}
ARRAY = re.compile(r"^ARRAY /dev/md0 metadata=1\.0 name=sandbox:0 UUID=[0-9a-f]{8}(:[0-9a-f]{8}){3}$")


def _mirror(host):
    """Two disks and the RAID 1 over them the raid task makes, as the server's plan does before bootloader."""
    for name in ("sda", "sdb"):
        make_disk(host, name, 8 * MIB)
    members = ["/dev/sda", "/dev/sdb"]
    run_task(Context(host), "raid", {"device": "/dev/md0", "level": 1, "members": members, "metadata": "1.0"})
    return len(host.planned_commands())


def _tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if relative.split("/")[-2] in ("sbin", "bin"):
            path.chmod(0o755)


def _machine(host, **settings):
    (host.root / "machine.json").write_text(json.dumps(settings))


def test_a_busybox_target_gets_its_mdadm_conf_and_nothing_else(sandbox, ctx):
    before = _mirror(sandbox)
    # The shape of the end-to-end image: busybox, an os-release of its own, no initramfs tools, no GRUB.
    _tree(sandbox.target, {"etc/os-release": 'NAME="provisioner e2e installed OS"\nID=e2e\n', "bin/busybox": ""})
    output = TASKS["bootloader"](ctx, PARAMS)
    conf = (sandbox.target / "etc/mdadm.conf").read_text().splitlines()
    assert conf[0].startswith("# ") and ARRAY.match(conf[1]) and len(conf) == 2
    assert not (sandbox.target / "etc/mdadm").exists()
    # What ran: only the question to mdadm; no mount, no chroot.
    assert sandbox.planned_commands()[before:] == ["mdadm --detail --brief /dev/md0"]
    assert "initramfs: skipped, the target has neither update-initramfs nor dracut" in output
    assert "boot loader: skipped, the target has no grub-install" in output
    assert ctx.channel.lines == output.splitlines() and ctx.channel.percents[-1] == 100


def test_a_debian_target_on_a_bios_machine_gets_initramfs_and_grub_on_every_member(sandbox, ctx):
    before = _mirror(sandbox)
    old_array = "ARRAY /dev/md0 metadata=1.2 UUID=00000000:00000000:00000000:00000000 name=build:0"
    _tree(sandbox.target, {
        "etc/debian_version": "12.7\n",
        "etc/mdadm/mdadm.conf": f"HOMEHOST <system>\nMAILADDR root\n{old_array}\nARRAY /dev/md9 UUID=1:2:3:4\n",
        "usr/sbin/update-initramfs": "#!/bin/sh\n",
        "usr/sbin/grub-install": "#!/bin/sh\n",
        "usr/bin/dracut": "#!/bin/sh\n",  # update-initramfs is Debian's own: it wins
    })  # fmt: skip
    output = TASKS["bootloader"](ctx, PARAMS)
    conf = (sandbox.target / "etc/mdadm/mdadm.conf").read_text().splitlines()
    # The image's settings and other arrays stay; its line for an md0 that no longer exists goes.
    assert conf[:3] == ["HOMEHOST <system>", "MAILADDR root", "ARRAY /dev/md9 UUID=1:2:3:4"]
    assert ARRAY.match(conf[3]) and len(conf) == 4
    assert not (sandbox.target / "etc/mdadm.conf").exists()
    t = sandbox.target
    assert sandbox.planned_commands()[before:] == [
        "mdadm --detail --brief /dev/md0",
        f"mount --bind /dev {t}/dev",
        f"mount --bind /proc {t}/proc",
        f"mount --bind /sys {t}/sys",
        f"chroot {t} /usr/sbin/update-initramfs -u -k all",
        f"chroot {t} /usr/sbin/grub-install /dev/sda",
        f"chroot {t} /usr/sbin/grub-install /dev/sdb",
        f"umount {t}/sys",
        f"umount {t}/proc",
        f"umount {t}/dev",
    ]
    assert "initramfs: rebuilt in the target with /usr/sbin/update-initramfs -u -k all" in output
    assert "boot loader: grub-install /dev/sdb" in output


def test_a_red_hat_target_on_a_uefi_machine_gets_dracut_and_no_grub_install(sandbox, ctx):
    before = _mirror(sandbox)
    _machine(sandbox, efi=True)
    _tree(sandbox.target, {
        "etc/os-release": 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n',
        "usr/bin/dracut": "#!/bin/sh\n",
        "usr/sbin/grub2-install": "#!/bin/sh\n",
    })  # fmt: skip
    output = TASKS["bootloader"](ctx, PARAMS)
    assert ARRAY.match((sandbox.target / "etc/mdadm.conf").read_text().splitlines()[-1])
    commands = sandbox.planned_commands()[before:]
    assert f"chroot {sandbox.target} /usr/bin/dracut --regenerate-all -f" in commands
    assert not any("grub" in c for c in commands)
    assert "boot loader: grub2-install skipped, the machine boots by UEFI" in output
    assert commands[-1] == f"umount {sandbox.target}/dev"


def test_ubuntu_is_debian_like_by_its_os_release(sandbox, ctx):
    _mirror(sandbox)
    _tree(sandbox.target, {"usr/lib/os-release": "ID=ubuntu\nID_LIKE=debian\n"})
    (sandbox.target / "etc").mkdir()
    os.symlink("../usr/lib/os-release", sandbox.target / "etc/os-release")  # as the image ships it
    TASKS["bootloader"](ctx, PARAMS)
    assert (sandbox.target / "etc/mdadm/mdadm.conf").exists()


class _FailingChroot(SandboxHost):
    """The target's update-initramfs fails (a hook that cannot find a module), as the sandbox cannot make happen."""

    def run(self, argv, **kw):
        if argv[:1] == ["chroot"] and "update-initramfs" in argv[2]:
            self.record(argv)
            return Completed(1, "update-initramfs: Generating /boot/initrd.img-6.1.0-25-amd64\nE: missing hook\n")
        return super().run(argv, **kw)


def test_a_failure_in_the_chroot_still_unmounts_everything(tmp_path):
    host = _FailingChroot(tmp_path / "sandbox")
    _mirror(host)
    _tree(host.target, {"etc/debian_version": "12\n", "usr/sbin/update-initramfs": "", "usr/sbin/grub-install": ""})
    ctx = Context(host, RecordingChannel())
    result = run_task(ctx, "bootloader", PARAMS)
    assert (result.ok, result.reason) == (False, "InitramfsFailed")
    assert "E: missing hook" in result.message and "E: missing hook" in ctx.channel.lines
    commands = host.planned_commands()
    assert commands[-3:] == [f"umount {host.target}/{d}" for d in ("sys", "proc", "dev")]
    assert not any("grub-install" in c for c in commands)


@pytest.mark.parametrize(
    ("params", "reason", "field"),
    [({"device": "/dev/sda", "members": ["/dev/sda"]}, "InvalidParams", "device"),
     ({"device": "/dev/md0", "members": []}, "InvalidParams", "members"),
     ({"device": "/dev/md0", "members": ["/dev/sda", "/dev/sda"]}, "InvalidParams", "members"),
     ({"device": "/dev/md0", "members": ["/dev/sda", "/dev/sdq"]}, "DiskNotFound", None),
     ({"device": "/dev/md1", "members": ["/dev/sda"]}, "DiskNotFound", None)],
)  # fmt: skip
def test_bad_params_change_nothing(sandbox, ctx, params, reason, field):
    before = _mirror(sandbox)
    result = run_task(ctx, "bootloader", params)
    assert result.reason == reason
    if field:
        assert result.message.startswith(field)
    assert sandbox.planned_commands()[before:] == [] and list(sandbox.target.iterdir()) == []


def test_a_device_that_is_no_array_fails_before_the_target_is_touched(sandbox, ctx):
    for name in ("sda", "md0"):
        make_disk(sandbox, name)  # md0 exists but mdadm --create never made it an array
    result = run_task(ctx, "bootloader", {"device": "/dev/md0", "members": ["/dev/sda"]})
    assert result.reason == "RaidNotFound"
    assert list(sandbox.target.iterdir()) == []


def test_it_writes_boot_sectors_so_it_is_never_run_twice():
    assert "bootloader" in DESTRUCTIVE


# -- the chroot, for real --------------------------------------------------------------------------------------


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)]  # fmt: skip


@pytest.fixture
def minimal_root(tmp_path):
    """A root with the memory OS's own /bin/sh and the libraries it needs, enough to run a shell script."""
    if os.geteuid() != 0:
        pytest.skip("bind mounts and chroot need root")
    root = tmp_path / "target"
    shell = Path(os.path.realpath("/bin/sh"))
    libs = re.findall(r"(/\S+\.so[.\d]*)", subprocess.run(["ldd", shell], capture_output=True, text=True).stdout)
    for path in [str(shell), *libs]:
        copy = root / path.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    (root / "bin").mkdir(exist_ok=True)
    if not (root / "bin/sh").exists():
        os.symlink(shell, root / "bin/sh")
    probe = subprocess.run(["mount", "--bind", "/proc", str(root)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no bind mounts here: {probe.stderr.decode().strip()}")
    subprocess.run(["umount", str(root)], check=True)
    yield root
    for mountpoint in reversed(_mounts_under(root)):
        subprocess.run(["umount", "--lazy", mountpoint])


@pytest.mark.parametrize("exit_status", [0, 3])
def test_the_chroot_sees_dev_proc_and_sys_and_is_always_unmounted(tmp_path, minimal_root, exit_status):
    tool = minimal_root / "usr/sbin/update-initramfs"
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_text(
        "#!/bin/sh\n"
        '[ -c /dev/null ] && [ -e /proc/self/status ] && [ -d /sys/block ] && echo "mounts seen, args: $*"\n'
        f"exit {exit_status}\n"
    )
    tool.chmod(0o755)
    ctx = Context(RealHost(tmp_path / "state", target_dir=minimal_root), RecordingChannel())
    said = []
    try:
        with boot._chroot(ctx, minimal_root, said.append):
            assert len(_mounts_under(minimal_root)) == 3
            boot._in_chroot(ctx, minimal_root, ["/usr/sbin/update-initramfs", "-u"], "InitramfsFailed", 60)
    except TaskFailed as exc:
        assert (exit_status, exc.reason) == (3, "InitramfsFailed")
    else:
        assert exit_status == 0
    assert "mounts seen, args: -u" in ctx.channel.lines
    assert _mounts_under(minimal_root) == [] and said == []
