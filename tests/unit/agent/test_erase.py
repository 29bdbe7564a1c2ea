"""erase_disks: the choice of way per disk, the fallbacks, the read-back, on sandbox disk images and on real loop
devices; and the real eraser's commands, driven by the tools' real output."""

import json
import os
import subprocess

import pytest

from provisioner.agent import erase, parsers
from provisioner.agent.context import Context
from provisioner.agent.host import RealHost
from provisioner.agent.tasks import DESTRUCTIVE, run_task
from provisioner.agent.tasks.erase import choose
from tests.unit.agent.conftest import MIB, RecordingChannel, make_disk
from tests.unit.agent.test_commission import Tools, _link, _write, fixture

DATA = b"customer data! " * 1000


def _disk_with_data(sandbox, name: str, size: int = 8 * MIB) -> str:
    path = make_disk(sandbox, name, size)
    with open(path, "r+b") as f:
        for offset in (0, size // 2 + 12345, size - len(DATA)):
            f.seek(offset)
            f.write(DATA)
    return path


def _reads_zeros(path: str) -> bool:
    with open(path, "rb") as f:
        return not any(f.read())


def _declare(sandbox, disks: dict) -> None:
    (sandbox.root / "machine.json").write_text(json.dumps({"nics": [], "disks": disks}))


def _report(result) -> dict:
    assert result.ok, result
    return {d["path"]: d for d in json.loads(result.output)["disks"]}


def test_auto_takes_the_best_way_each_disk_offers(sandbox, ctx):
    paths = {name: _disk_with_data(sandbox, name) for name in ("nvme0n1", "sda", "sdb", "sdc")}
    _declare(sandbox, {
        "nvme0n1": {"nvme_format": True, "serial": "NV1"},
        "sda": {"ata_security": {"frozen": False, "enhanced": True}},
        "sdb": {"ata_security": {"frozen": True}},
        "sdc": {"discard": False},
    })  # fmt: skip
    report = _report(run_task(ctx, "erase_disks", {"disks": ["/dev/nvme0n1", "/dev/sda", "/dev/sdb", "/dev/sdc"]}))
    assert {path: (d["method"], d["verified"]) for path, d in report.items()} == {
        "/dev/nvme0n1": ("nvme_format", True),
        "/dev/sda": ("ata_secure_erase", True),
        "/dev/sdb": ("discard", True),
        "/dev/sdc": ("zero", True),
    }
    assert report["/dev/nvme0n1"] == {"path": "/dev/nvme0n1", "serial": "NV1", "method": "nvme_format",
                                      "fallback": "", "verified": True,
                                      "seconds": report["/dev/nvme0n1"]["seconds"]}  # fmt: skip
    assert report["/dev/sdb"]["fallback"].startswith("ATA security is frozen")
    assert report["/dev/sdc"]["fallback"] == (
        "the disk (sata) offers neither NVMe format nor ATA secure erase; the disk does not support discard"
    )
    assert report["/dev/sdc"]["serial"] == "sandbox-sdc"
    for name, path in paths.items():
        assert _reads_zeros(path), name
        assert os.path.getsize(path) == 8 * MIB
    commands = sandbox.planned_commands()
    assert any(c.startswith("nvme format ") and "--ses=1" in c for c in commands)
    assert any("--security-erase-enhanced provisioner-erase" in c for c in commands)
    assert sum(c.startswith("blkdiscard ") for c in commands) == 1
    # Each disk's choice and its reason are in the log.
    assert any(line.startswith("/dev/sdb: discard (ATA security is frozen") for line in ctx.channel.lines)
    percents = ctx.channel.percents
    assert percents == sorted(percents) and percents[-1] == 100
    assert "erase_disks" in DESTRUCTIVE


def test_an_erase_that_leaves_data_is_followed_by_zeroing(sandbox, ctx):
    """A drive that does not read zeros after TRIM keeps answering with the old data."""
    path = _disk_with_data(sandbox, "sda")
    _declare(sandbox, {"sda": {"erase_zeroes": False}})
    report = _report(run_task(ctx, "erase_disks", {"disks": ["/dev/sda"]}))["/dev/sda"]
    assert report["method"] == "zero" and report["verified"] is True
    assert report["fallback"].endswith("after discard the disk still read data at byte 0, so it was zeroed")
    assert _reads_zeros(path)


def test_zero_writes_zeros_over_the_data_and_keeps_the_size(sandbox, ctx):
    path = _disk_with_data(sandbox, "sda", 64 * MIB)
    report = _report(run_task(ctx, "erase_disks", {"disks": ["/dev/sda"], "method": "zero"}))["/dev/sda"]
    assert (report["method"], report["fallback"], report["verified"]) == ("zero", "", True)
    assert _reads_zeros(path) and os.path.getsize(path) == 64 * MIB
    assert not sandbox.planned_commands()


def test_discard_falls_back_to_zero_where_the_disk_cannot(sandbox, ctx):
    path = _disk_with_data(sandbox, "sda")
    _declare(sandbox, {"sda": {"discard": False}})
    report = _report(run_task(ctx, "erase_disks", {"disks": ["/dev/sda"], "method": "discard"}))["/dev/sda"]
    assert (report["method"], report["fallback"]) == ("zero", "the disk does not support discard")
    assert _reads_zeros(path)


def test_secure_fails_before_touching_any_disk_without_a_secure_erase(sandbox, ctx):
    paths = [_disk_with_data(sandbox, "nvme0n1"), _disk_with_data(sandbox, "sda")]
    _declare(sandbox, {"nvme0n1": {"nvme_format": True}, "sda": {"ata_security": {"frozen": True}}})
    result = run_task(ctx, "erase_disks", {"disks": ["/dev/nvme0n1", "/dev/sda"], "method": "secure"})
    assert (result.ok, result.reason) == (False, "SecureEraseUnavailable")
    assert result.message.startswith("no secure erase for /dev/sda: ATA security is frozen")
    assert not any(_reads_zeros(path) for path in paths)


def test_without_verify_nothing_is_read_back(sandbox, ctx):
    _disk_with_data(sandbox, "sda")
    _declare(sandbox, {"sda": {"erase_zeroes": False}})
    report = _report(run_task(ctx, "erase_disks", {"disks": ["/dev/sda"], "verify": False}))["/dev/sda"]
    assert (report["method"], report["verified"]) == ("discard", False)


def test_a_disk_that_ignores_writes_fails_the_task_naming_it_and_the_offset(sandbox, ctx, monkeypatch):
    """No real disk is at hand that acknowledges writes and keeps its data; zeroing is made to do nothing."""
    _disk_with_data(sandbox, "sdb")
    good = _disk_with_data(sandbox, "sda")
    _declare(sandbox, {"sdb": {"erase_zeroes": False, "discard": False}})
    monkeypatch.setattr(erase, "zero", lambda fd, size, progress: None)
    result = run_task(ctx, "erase_disks", {"disks": ["/dev/sda", "/dev/sdb"]})
    assert (result.ok, result.reason) == (False, "EraseNotVerified")
    assert result.message == "/dev/sdb still reads non-zero data at byte 0 after zeroing"
    # The disk that was erased is reported as such.
    assert json.loads(result.output.splitlines()[0])["disks"][0]["path"] == "/dev/sda"
    assert _reads_zeros(good)


@pytest.mark.parametrize(
    ("params", "reason", "message"),
    [
        ({"disks": ["/dev/sda"], "method": "shred"}, "InvalidParams", "method: one of auto, secure, discard, zero "
                                                                      "is required"),
        ({"disks": ["/dev/sda"], "verify": "yes"}, "InvalidParams", "verify: true or false is required"),
        ({"disks": ["/dev/sda", "/dev/sda"]}, "InvalidParams", "disks: each disk may be named once"),
        ({"disks": []}, "InvalidParams", "disks: must not be empty"),
        ({"disks": ["/dev/sda", "/dev/sdz"]}, "DiskNotFound", None),
    ],
)  # fmt: skip
def test_bad_params_change_nothing(sandbox, ctx, params, reason, message):
    path = _disk_with_data(sandbox, "sda")
    result = run_task(ctx, "erase_disks", params)
    assert result.reason == reason and (message is None or result.message == message)
    assert not _reads_zeros(path)


def test_verify_offsets_cover_start_middle_and_end():
    assert erase.verify_offsets(64 * MIB) == [0, 32 * MIB, 63 * MIB]
    assert erase.verify_offsets(MIB // 2) == [0]
    assert erase.verify_offsets(MIB + 4096) == [0, 4096]


def test_the_choice_for_each_kind_of_disk():
    nvme = erase.Probe("nvme", nvme_format=True, lba_format=0, discard=True)
    assert choose(nvme, "auto") == ("nvme_format", "")
    assert choose(nvme, "discard") == ("discard", "")
    assert choose(nvme, "zero") == ("zero", "")
    old_nvme = erase.Probe("nvme", why_not_nvme="the NVMe controller does not support Format NVM", discard=True)
    assert choose(old_nvme, "auto") == ("discard", "the NVMe controller does not support Format NVM")
    locked = erase.Probe("sata", ata={"supported": True, "enabled": True, "locked": True})
    assert choose(locked, "auto") == (
        "zero", "an ATA password this agent does not know is already set on the drive; the disk does not support "
                "discard"
    )  # fmt: skip
    expired = erase.Probe("sata", ata={"supported": True, "expired": True}, discard=True)
    assert choose(expired, "secure")[1].startswith("the drive refuses ATA security commands until it is power-cycled")


# -- the real eraser's commands ---------------------------------------------------------------------------------


def test_real_probe_reads_nvme_and_ata_capabilities(tmp_path):
    sys_root = tmp_path / "sys"
    _write(sys_root / "block/nvme0n1/queue/discard_max_bytes", "2199023255040\n")
    _link(sys_root / "block/sda/device", sys_root / "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0")
    _write(sys_root / "block/sda/queue/discard_max_bytes", "0\n")
    tools = Tools({
        ("nvme", "id-ctrl", "/dev/nvme0n1", "--output-format=json"): (0, fixture("nvme-id-ctrl.json")),
        ("nvme", "id-ns", "/dev/nvme0n1", "--output-format=json"): (0, fixture("nvme-id-ns.json").replace(
            '"flbas":0', '"flbas":1')),
        ("hdparm", "-I", "/dev/sda"): (0, fixture("hdparm-I-hdd-frozen.txt")),
        ("nvme", "format", "/dev/nvme0n1", "--ses=1", "--lbaf=1", "--force", "--timeout=10800000"): (
            0, "Success formatting namespace:1\n"),
    })  # fmt: skip
    eraser = erase.RealEraser(tools, sys_root)
    nvme = eraser.probe("nvme0n1", "/dev/nvme0n1")
    assert (nvme.transport, nvme.nvme_format, nvme.lba_format, nvme.discard) == ("nvme", True, 1, True)
    sata = eraser.probe("sda", "/dev/sda")
    assert (sata.transport, sata.ata["frozen"], sata.ata["erase_minutes"], sata.discard) == ("sata", True, 390, False)
    # The LBA format in use is kept: a 4 KiB-sector namespace stays one.
    eraser.nvme_format("/dev/nvme0n1", nvme)
    assert tools.calls[-1] == ["nvme", "format", "/dev/nvme0n1", "--ses=1", "--lbaf=1", "--force", "--timeout=10800000"]


def test_real_ata_secure_erase_sets_the_temporary_password_and_unlocks_after_a_failure(tmp_path):
    ata = erase.Probe("sata", ata=parsers.hdparm_security(fixture("hdparm-I-ssd-not-frozen.txt")))
    ok = Tools({
        ("hdparm", "--user-master", "u", "--security-set-pass", "provisioner-erase", "/dev/sda"): (0, ""),
        ("hdparm", "--user-master", "u", "--security-erase-enhanced", "provisioner-erase", "/dev/sda"): (0, ""),
    })  # fmt: skip
    erase.RealEraser(ok, tmp_path).ata_secure_erase("/dev/sda", ata)
    assert [call[3] for call in ok.calls] == ["--security-set-pass", "--security-erase-enhanced"]
    refused = Tools({
        ("hdparm", "--user-master", "u", "--security-set-pass", "provisioner-erase", "/dev/sda"): (0, ""),
        ("hdparm", "--user-master", "u", "--security-erase-enhanced", "provisioner-erase", "/dev/sda"): (
            5, "\n/dev/sda:\n Issuing SECURITY_ERASE command, password=\"provisioner-erase\", user=user\n"
               "SECURITY_ERASE: Input/output error\n"),
        ("hdparm", "--user-master", "u", "--security-disable", "provisioner-erase", "/dev/sda"): (0, ""),
    })  # fmt: skip
    with pytest.raises(erase.EraseFailed, match="ATA secure erase failed: SECURITY_ERASE: Input/output error"):
        erase.RealEraser(refused, tmp_path).ata_secure_erase("/dev/sda", ata)
    assert refused.calls[-1][3] == "--security-disable"


def test_a_missing_tool_is_a_reason_to_fall_back(tmp_path):
    eraser = erase.RealEraser(Tools(), tmp_path)
    probe = eraser.probe("nvme0n1", "/dev/nvme0n1")
    assert probe.nvme_format is False and probe.why_not_nvme == "nvme is not installed in the memory OS"
    with pytest.raises(erase.EraseFailed, match="blkdiscard is not installed"):
        eraser.discard("/dev/sda")


# -- real block devices -----------------------------------------------------------------------------------------

needs_loop = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/loop-control"), reason="loop devices need root"
)


@pytest.fixture
def loop_device(tmp_path):
    attached = []

    def attach(size: int) -> tuple[str, str]:
        backing = tmp_path / f"disk{len(attached)}.img"
        with open(backing, "wb") as f:
            f.truncate(size)
            for offset in (0, size // 2, size - len(DATA)):
                f.seek(offset)
                f.write(DATA)
        dev = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True, capture_output=True,
                             text=True).stdout.strip()  # fmt: skip
        attached.append(dev)
        return dev, str(backing)

    yield attach
    for dev in attached:
        subprocess.run(["losetup", "--detach", dev], capture_output=True)


@needs_loop
@pytest.mark.parametrize("method", ["auto", "zero"])
def test_erase_a_real_block_device(tmp_path, loop_device, method):
    dev, backing = loop_device(32 * MIB)
    # Read through the page cache first, as udev's probe would: the read-back must not see these cached pages.
    with open(dev, "rb") as f:
        assert f.read(len(DATA)) == DATA
    (tmp_path / "state").mkdir()
    ctx = Context(RealHost(tmp_path / "state"), RecordingChannel())
    report = _report(run_task(ctx, "erase_disks", {"disks": [dev], "method": method}))[dev]
    # A loop device discards by punching holes in its file, so "auto" gets there by discard.
    assert (report["method"], report["verified"]) == ("discard" if method == "auto" else "zero", True)
    assert _reads_zeros(backing) and _reads_zeros(dev)


@needs_loop
def test_a_real_device_in_use_is_refused(tmp_path, loop_device):
    dev, backing = loop_device(8 * MIB)
    (tmp_path / "state").mkdir()
    ctx = Context(RealHost(tmp_path / "state"), RecordingChannel())
    holder = os.open(dev, os.O_RDONLY | os.O_EXCL)
    try:
        result = run_task(ctx, "erase_disks", {"disks": [dev]})
    finally:
        os.close(holder)
    assert (result.reason, result.retryable) == ("DiskBusy", True)
    assert not _reads_zeros(backing)
