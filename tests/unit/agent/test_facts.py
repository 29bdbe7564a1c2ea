"""Facts read from a small fake sysfs/procfs tree, and a sandbox's facts."""

import json
from pathlib import Path

from provisioner.agent import facts
from tests.unit.agent.conftest import MIB, make_disk


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _fake_sys(root):
    sys_root, proc_root = root / "sys", root / "proc"
    _write(sys_root / "devices/system/cpu/online", "0-7,16-23\n")
    _write(proc_root / "meminfo", "MemTotal:       32768000 kB\nMemFree: 1 kB\n")
    _write(sys_root / "block/sda/size", "937703088\n")
    _write(sys_root / "block/sda/removable", "0\n")
    _write(sys_root / "block/sda/queue/rotational", "0\n")
    _write(sys_root / "block/sda/device/model", "SAMSUNG MZ7L3480  \n")
    _write(sys_root / "block/sda/device/serial", "S6ZMNE0T\n")
    _write(sys_root / "block/nvme0n1/size", "2000000\n")
    _write(sys_root / "block/nvme0n1/queue/rotational", "1\n")
    _write(sys_root / "block/nvme0n1/serial", "NV123\n")
    _write(sys_root / "block/nvme0n1/wwid", "eui.0025388b91b2c3d4\n")
    _write(sys_root / "block/sda/device/wwid", "naa.5002538e40a1b2c3\n")
    (sys_root / "firmware/efi").mkdir(parents=True)
    _write(sys_root / "block/loop0/size", "100\n")
    _write(sys_root / "block/sr0/size", "100\n")
    _write(sys_root / "block/sdb/size", "1000\n")
    _write(sys_root / "block/sdb/removable", "1\n")
    _write(sys_root / "class/net/eno1/address", "AA:BB:CC:DD:EE:01\n")
    _write(sys_root / "class/net/eno1/carrier", "1\n")
    _write(sys_root / "class/net/eno1/speed", "10000\n")
    (sys_root / "class/net/eno1/device").mkdir()
    _write(sys_root / "class/net/eno2/address", "aa:bb:cc:dd:ee:02\n")
    _write(sys_root / "class/net/eno2/speed", "-1\n")
    (sys_root / "class/net/eno2/device").mkdir()
    _write(sys_root / "class/net/lo/address", "00:00:00:00:00:00\n")
    _write(sys_root / "class/net/br0/address", "aa:bb:cc:dd:ee:03\n")
    _write(sys_root / "class/dmi/id/sys_vendor", "Dell Inc.\n")
    _write(sys_root / "class/dmi/id/product_name", "PowerEdge R650\n")
    _write(sys_root / "class/dmi/id/product_serial", "ABC1234\n")
    return sys_root, proc_root


def test_collect_reads_cpus_memory_disks_nics_and_dmi(tmp_path):
    found = facts.collect(*_fake_sys(tmp_path))
    assert found["cpus"] == 16
    assert found["memory_bytes"] == 32768000 * 1024
    assert found["disks"] == [
        {"name": "nvme0n1", "path": "/dev/nvme0n1", "size_bytes": 2000000 * 512, "model": "", "serial": "NV123",
         "rotational": True, "wwn": "eui.0025388b91b2c3d4"},
        {"name": "sda", "path": "/dev/sda", "size_bytes": 937703088 * 512, "model": "SAMSUNG MZ7L3480",
         "serial": "S6ZMNE0T", "rotational": False, "wwn": "naa.5002538e40a1b2c3"},
    ]  # fmt: skip
    assert found["nics"] == [
        {"name": "eno1", "mac": "aa:bb:cc:dd:ee:01", "link": True, "speed_mbps": 10000},
        {"name": "eno2", "mac": "aa:bb:cc:dd:ee:02", "link": False, "speed_mbps": None},
    ]
    assert found["dmi"] == {"vendor": "Dell Inc.", "product": "PowerEdge R650", "serial": "ABC1234"}
    assert found["efi"] is True


def test_a_disk_without_a_world_wide_id_and_a_bios_machine(tmp_path):
    sys_root, proc_root = tmp_path / "sys", tmp_path / "proc"
    _write(sys_root / "block/vda/size", "2048\n")
    _write(proc_root / "meminfo", "MemTotal: 1 kB\n")
    found = facts.collect(sys_root, proc_root)
    assert (found["disks"][0]["wwn"], found["disks"][0]["serial"]) == ("", "")
    assert found["efi"] is False


def test_a_sata_disk_without_a_serial_file_reports_the_serial_of_its_vpd_page(tmp_path):
    """libata exposes no device/serial: the drive's own serial is on VPD page 0x80, not the wwid's T10 string."""
    sys_root, proc_root = tmp_path / "sys", tmp_path / "proc"
    _write(sys_root / "block/sda/size", "2048\n")
    _write(sys_root / "block/sda/device/wwid", "t10.ATA     QEMU HARDDISK                           E2E-DISK-A\n")
    (sys_root / "block/sda/device/vpd_pg80").write_bytes(b"\x00\x80\x00\x14" + b"          E2E-DISK-A")
    _write(proc_root / "meminfo", "MemTotal: 1 kB\n")
    disk = facts.collect(sys_root, proc_root)["disks"][0]
    assert disk["serial"] == "E2E-DISK-A" and disk["wwn"].startswith("t10.ATA")


def test_collect_on_this_host_has_the_contract_shape():
    found = facts.collect()
    assert found["cpus"] >= 1 and found["memory_bytes"] > 0
    assert set(found) == {"cpus", "memory_bytes", "disks", "nics", "dmi", "efi"}
    assert found["efi"] is Path("/sys/firmware/efi").is_dir()
    for disk in found["disks"]:
        assert set(disk) == {"name", "path", "size_bytes", "model", "serial", "rotational", "wwn"}


def test_sandbox_facts_report_image_disks_and_declared_nics(sandbox):
    make_disk(sandbox, "sda", 8 * MIB)
    make_disk(sandbox, "sdb", 4 * MIB)
    (sandbox.root / "machine.json").write_text(
        json.dumps({"cpus": 4, "nics": [{"name": "eno1", "mac": "52:54:00:AB:CD:EF", "link": True}],
                    "dmi": {"vendor": "Sandbox"}, "efi": True,
                    "disks": {"sdb": {"wwn": "naa.5000c500a1b2c3d4", "rotational": True, "model": "ST4000"}}})
    )  # fmt: skip
    found = sandbox.facts()
    assert [(d["path"], d["size_bytes"]) for d in found["disks"]] == [("/dev/sda", 8 * MIB), ("/dev/sdb", 4 * MIB)]
    # Disks may be described, so disk hints (wwn, rotational, model) can be tried against a sandbox.
    assert [(d["wwn"], d["rotational"], d["model"]) for d in found["disks"]] == [
        ("", False, "sandbox disk image"),
        ("naa.5000c500a1b2c3d4", True, "ST4000"),
    ]
    assert found["efi"] is True and sandbox.efi() is True
    # Every NIC has the contract's fields, whatever machine.json left out.
    assert found["nics"] == [{"name": "eno1", "mac": "52:54:00:ab:cd:ef", "link": True, "speed_mbps": None}]
    assert found["cpus"] == 4
    assert found["dmi"] == {"vendor": "Sandbox", "product": "", "serial": ""}
