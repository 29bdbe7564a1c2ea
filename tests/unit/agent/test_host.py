"""Sandbox mode cannot reach a device of the host: every device path and every command goes through the host."""

import os

import pytest

from provisioner.agent.host import RealHost, SandboxViolation
from provisioner.agent.results import TaskFailed
from tests.unit.agent.conftest import make_disk


def test_device_maps_into_the_sandbox(sandbox):
    image = make_disk(sandbox, "sda")
    assert sandbox.device("/dev/sda") == image


@pytest.mark.parametrize("path", ["/dev/../etc/passwd", "/etc/passwd", "sda", "/dev/disk/by-id/x", "/dev/sda/../x"])
def test_anything_but_a_plain_dev_name_is_not_a_disk(sandbox, path):
    with pytest.raises(TaskFailed) as exc:
        sandbox.device(path)
    assert exc.value.reason == "DiskNotFound"


def test_missing_image_is_disk_not_found(sandbox):
    with pytest.raises(TaskFailed, match="DiskNotFound"):
        sandbox.device("/dev/sdz")


def test_symlink_out_of_the_sandbox_is_refused(sandbox, tmp_path):
    outside = tmp_path / "outside.img"
    outside.write_bytes(b"")
    os.symlink(outside, sandbox.disks / "sda.img")
    os.symlink("/dev/null", sandbox.disks / "sdb.img")
    with pytest.raises(SandboxViolation):
        sandbox.device("/dev/sda")
    with pytest.raises(SandboxViolation):
        sandbox.device("/dev/sdb")


@pytest.mark.parametrize(
    "argv",
    [["wipefs", "--all", "/dev/sda"], ["sgdisk", "--zap-all", "/dev/../dev/sda"], ["dd", "of=/dev/sda"],
     ["cat", "/sys/block/sda/size"], ["mdadm", "--create", "/dev/md0", "1:/dev/sdb"]],
)  # fmt: skip
def test_commands_naming_host_devices_are_refused(sandbox, argv):
    with pytest.raises(SandboxViolation):
        sandbox.run(argv)


def test_commands_on_sandbox_files_run_for_real(sandbox):
    image = make_disk(sandbox, "sda")
    assert sandbox.run(["wipefs", image]).returncode == 0


def test_block_device_commands_are_recorded_not_run(sandbox):
    done = sandbox.run(["mdadm", "--stop", "/dev/md0"], block_devices=True)
    assert done.returncode == 0
    assert sandbox.planned_commands() == ["mdadm --stop /dev/md0"]


def test_reboot_and_poweroff_are_recorded(sandbox):
    sandbox.reboot()
    sandbox.poweroff()
    assert (sandbox.root / "reboot-requested").exists()
    assert (sandbox.root / "poweroff-requested").exists()


def test_real_host_only_hands_out_block_devices(tmp_path):
    # Read-only checks: a character device, a missing node, a path that climbs out of /dev.
    real = RealHost(tmp_path)
    for path, words in [("/dev/null", "not a block device"), ("/dev/sdzz9", "does not exist"),
                        ("/dev/../etc/passwd", "not a device name")]:  # fmt: skip
        with pytest.raises(TaskFailed, match=words) as exc:
            real.device(path)
        assert exc.value.reason == "DiskNotFound"


def test_real_host_uses_a_given_target_root(tmp_path):
    assert RealHost(tmp_path, tmp_path / "mnt").target_root() == tmp_path / "mnt"
    with pytest.raises(TaskFailed, match="no image was written"):
        RealHost(tmp_path).target_root()
