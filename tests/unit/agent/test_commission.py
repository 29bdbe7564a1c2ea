"""Full facts (commissioning): the tool readers on real tool output, collect_full over a fake sysfs tree with the
tools answering from fixtures, the sandbox's declared facts, and the commission task."""

import json
import os
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from provisioner.agent import facts, lldp, parsers
from provisioner.agent.results import TaskFailed
from provisioner.agent.tasks import TASKS, run_task
from provisioner.agent.tasks.system import fit_facts
from provisioner.agent.tools import Completed
from tests.unit.agent.conftest import MIB, make_disk

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


class Tools:
    """Answers tool calls from fixtures, as the memory OS's tools would; a tool it has no answer for is missing."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str]] | None = None):
        self.answers = answers or {}
        self.calls: list[list[str]] = []

    def __call__(self, argv, timeout, **kwargs):
        self.calls.append(list(argv))
        if tuple(argv) in self.answers:
            return Completed(*self.answers[tuple(argv)])
        if any(key[0] == argv[0] for key in self.answers):
            return Completed(1, f"{argv[0]}: no such device\n")
        raise TaskFailed("ToolMissing", f"{argv[0]} is not installed in the memory OS")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _link(link: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _server(root: Path) -> tuple[Path, Path]:
    """A two-socket server's sysfs and procfs, as far as collect_full reads them."""
    sys_root, proc_root = root / "sys", root / "proc"
    _write(sys_root / "devices/system/cpu/online", "0-3\n")
    for n, (package, core) in enumerate([(0, 0), (0, 0), (1, 0), (1, 1)]):
        topology = sys_root / f"devices/system/cpu/cpu{n}/topology"
        _write(topology / "physical_package_id", f"{package}\n")
        _write(topology / "core_id", f"{core}\n")
        _write(topology / "die_id", "0\n")
    _write(sys_root / "devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "3500000\n")
    _write(proc_root / "cpuinfo", "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n"
                                  "cpu MHz\t\t: 2000.000\n\n")  # fmt: skip
    _write(proc_root / "meminfo", "MemTotal:       131072000 kB\n")
    pci_bus = sys_root / "devices/pci0000:00"
    # sda: a SATA SSD on the chipset's AHCI controller.
    sda = pci_bus / "0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0"
    _link(sys_root / "block/sda/device", sda)
    _write(sys_root / "block/sda/size", "937703088\n")
    _write(sys_root / "block/sda/queue/rotational", "0\n")
    _write(sda / "model", "SAMSUNG MZ7L3480\n")
    _write(sda / "serial", "S664NE0R812345\n")
    _write(sda / "wwid", "naa.5002538f4280abcd\n")
    # sdb: a SAS disk behind an HBA's expander.
    sdb = pci_bus / "0000:00:1c.0/0000:3b:00.0/host1/port-1:0/expander-1:0/port-1:0:1/end_device-1:0:1"
    sdb = sdb / "target1:0:1/1:0:1:0"
    _link(sys_root / "block/sdb/device", sdb)
    _write(sys_root / "block/sdb/size", "7814037168\n")
    _write(sys_root / "block/sdb/queue/rotational", "1\n")
    _write(sdb / "sas_address", "0x5000c500c8251235\n")
    # sdc: a USB stick left in the machine, not removable as far as its bridge says.
    sdc = pci_bus / "0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0"
    _link(sys_root / "block/sdc/device", sdc)
    _write(sys_root / "block/sdc/size", "60063744\n")
    # nvme0n1: NVMe keeps its ids in the block device's own directory.
    _write(sys_root / "block/nvme0n1/size", "3750748848\n")
    _write(sys_root / "block/nvme0n1/wwid", "eui.002538f141234567\n")
    _write(sys_root / "block/nvme0n1/serial", "S64GNE0T401234\n")
    _link(sys_root / "block/nvme0n1/device", pci_bus / "0000:00:1d.0/0000:5e:00.0/nvme/nvme0")
    for name, mac, carrier, driver, pci in (("eno1", "3c:ec:ef:00:00:01", "1", "ixgbe", "0000:3b:00.0"),
                                            ("eno2", "3c:ec:ef:00:00:02", "0", "ixgbe", "0000:3b:00.1")):  # fmt: skip
        nic = sys_root / "class/net" / name
        _write(nic / "address", mac + "\n")
        _write(nic / "carrier", carrier + "\n")
        _write(nic / "speed", "10000\n" if carrier == "1" else "-1\n")
        _link(nic / "device", pci_bus / pci)
        _link(pci_bus / pci / "driver", sys_root / "bus/pci/drivers" / driver)
    for address, cls, vendor, device in (("0000:00:00.0", "0x060000", "0x8086", "0x09a2"),
                                         ("0000:3b:00.0", "0x020000", "0x8086", "0x10fb"),
                                         ("0000:3b:00.1", "0x020000", "0x8086", "0x10fb"),
                                         ("0000:5e:00.0", "0x010802", "0x144d", "0xa80a")):  # fmt: skip
        entry = pci_bus / address
        _write(entry / "class", cls + "\n")
        _write(entry / "vendor", vendor + "\n")
        _write(entry / "device", device + "\n")
        _link(sys_root / "bus/pci/devices" / address, entry)
    dmi = sys_root / "class/dmi/id"
    for name, value in (("sys_vendor", "Supermicro"), ("product_name", "SYS-120U-TNR"), ("product_serial", "S1234"),
                        ("bios_vendor", "American Megatrends International, LLC."), ("bios_version", "1.4"),
                        ("bios_date", "06/07/2022"), ("board_vendor", "Supermicro"), ("board_name", "X12DPU-6"),
                        ("board_serial", "OM21AS000123"), ("chassis_serial", "C1160LK00A1234")):  # fmt: skip
        _write(dmi / name, value + "\n")
    return sys_root, proc_root


PCI_IDS = (
    "# excerpt of pci.ids\n"
    "8086  Intel Corporation\n"
    "\t09a2  Ice Lake Memory Map/VT-d\n"
    "\t10fb  82599ES 10-Gigabit SFI/SFP+ Network Connection\n"
    "\t\t8086 000c  Ethernet Server Adapter X520-DA2\n"
    "144d  Samsung Electronics Co Ltd\n"
    "\ta80a  NVMe SSD Controller PM9A1/PM9A3/980PRO\n"
    "C 02  Network controller\n"
    "\t00  Ethernet controller\n"
)

NEIGHBOUR = {"chassis_id": "00:1c:73:aa:bb:cc", "system_name": "leaf-12.dc1", "port_id": "Ethernet12",
             "port_description": "web01 eno1"}  # fmt: skip


def _server_tools() -> Tools:
    return Tools({
        ("dmidecode", "-t", "17"): (0, fixture("dmidecode-t17.txt")),
        ("smartctl", "--json", "-H", "-i", "/dev/sda"): (0, fixture("smartctl-sata-passed.json")),
        ("smartctl", "--json", "-H", "-i", "/dev/sdb"): (24, fixture("smartctl-hdd-failing.json")),
        ("smartctl", "--json", "-H", "-i", "/dev/nvme0n1"): (0, fixture("smartctl-nvme-passed.json")),
        ("ethtool", "-i", "eno1"): (0, fixture("ethtool-i-ixgbe.txt")),
        ("ethtool", "-i", "eno2"): (0, fixture("ethtool-i-ixgbe.txt")),
        ("ipmitool", "lan", "print", "1"): (0, fixture("ipmitool-lan-print.txt")),
    })  # fmt: skip


def test_collect_full_reads_every_part_of_a_server(tmp_path):
    sys_root, proc_root = _server(tmp_path)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/ipmi0").touch()
    (tmp_path / "pci.ids").write_text(PCI_IDS)
    listened = []

    def listen(interfaces, seconds):
        listened.append((interfaces, seconds))
        return {"eno1": NEIGHBOUR}, [], 1.25

    found = facts.collect_full(sys_root, proc_root, lldp_s=30, run=_server_tools(), listen=listen,
                               pci_ids=(tmp_path / "pci.ids",), dev_root=tmp_path / "dev")  # fmt: skip

    # Only NICs with link are listened on.
    assert listened == [(["eno1"], 30)]
    assert found["cpu"] == {"model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "sockets": 2, "cores": 3,
                            "threads": 4, "mhz": 3500}  # fmt: skip
    assert [m["slot"] for m in found["memory_modules"]] == ["A1", "B1", "B2"]
    assert found["memory_modules"][2] == {"slot": "B2", "size_bytes": 64 << 30, "speed_mts": 4800, "type": "DDR5",
                                          "manufacturer": "Micron Technology", "serial": "E3D4C5B6",
                                          "part_number": "MTC40F2046S1RC48BA1"}  # fmt: skip
    disks = {d["name"]: d for d in found["disks"]}
    assert {name: d["transport"] for name, d in disks.items()} == {
        "nvme0n1": "nvme", "sda": "sata", "sdb": "sas", "sdc": "usb"
    }  # fmt: skip
    assert disks["sda"]["smart"] == {"available": True, "passed": True, "detail": "SMART health check passed"}
    assert disks["sdb"]["smart"]["passed"] is False and "FAILED" in disks["sdb"]["smart"]["detail"]
    assert disks["nvme0n1"]["smart"]["passed"] is True
    # The facts of collect() stay as they were.
    assert disks["sda"]["wwn"] == "naa.5002538f4280abcd" and disks["sda"]["serial"] == "S664NE0R812345"
    assert disks["sda"]["model"] == "SAMSUNG MZ7L3480" and disks["sda"]["rotational"] is False
    assert found["nics"] == [
        {"name": "eno1", "mac": "3c:ec:ef:00:00:01", "link": True, "speed_mbps": 10000, "driver": "ixgbe",
         "firmware": "0x800008a4, 1.2028.0", "lldp": NEIGHBOUR},
        {"name": "eno2", "mac": "3c:ec:ef:00:00:02", "link": False, "speed_mbps": None, "driver": "ixgbe",
         "firmware": "0x800008a4, 1.2028.0", "lldp": None},
    ]  # fmt: skip
    pci = {d["address"]: d for d in found["pci"]}
    assert pci["0000:3b:00.0"] == {
        "address": "0000:3b:00.0",
        "class": "020000",
        "vendor_id": "8086",
        "device_id": "10fb",
        "vendor": "Intel Corporation",
        "device": "82599ES 10-Gigabit SFI/SFP+ Network Connection",
        "driver": "ixgbe",
    }
    assert pci["0000:5e:00.0"]["vendor"] == "Samsung Electronics Co Ltd" and pci["0000:5e:00.0"]["driver"] == ""
    assert found["firmware"] == {"bios_vendor": "American Megatrends International, LLC.", "bios_version": "1.4",
                                 "bios_date": "06/07/2022", "board_vendor": "Supermicro", "board_name": "X12DPU-6",
                                 "board_serial": "OM21AS000123", "chassis_serial": "C1160LK00A1234"}  # fmt: skip
    assert found["bmc"] == {"address": "10.20.30.40", "mac": "3c:ec:ef:12:34:56", "source": "static"}
    assert found["lldp_listened_s"] == 1.2 or found["lldp_listened_s"] == 1.3
    # smartctl could not talk to the USB stick: that is the disk's SMART detail, not a missing tool.
    assert disks["sdc"]["smart"]["available"] is False
    assert found["notes"] == []
    assert found["dmi"] == {"vendor": "Supermicro", "product": "SYS-120U-TNR", "serial": "S1234"}
    json.dumps(found)


def test_missing_tools_are_notes_and_everything_else_is_still_read(tmp_path):
    sys_root, proc_root = _server(tmp_path)
    (tmp_path / "dev").mkdir()
    found = facts.collect_full(sys_root, proc_root, lldp_s=0, run=Tools(), listen=lldp.listen,
                               pci_ids=(tmp_path / "no-pci.ids",), dev_root=tmp_path / "dev")  # fmt: skip
    assert found["memory_modules"] == [] and found["bmc"] == {}
    assert all(
        d["smart"] == {"available": False, "passed": None, "detail": "smartctl is not installed in the memory OS"}
        for d in found["disks"]
    )
    assert [nic["firmware"] for nic in found["nics"]] == ["", ""]
    assert [nic["lldp"] for nic in found["nics"]] == [None, None] and found["lldp_listened_s"] == 0
    assert found["pci"][1]["vendor"] == "" and found["cpu"]["sockets"] == 2
    assert found["notes"] == [
        "dmidecode is not installed in the memory OS: memory modules not read",
        "smartctl is not installed in the memory OS: SMART health not read",
        f"no pci.ids ({tmp_path / 'no-pci.ids'}): PCI vendor and device names left empty",
        "no BMC answers in-band (ipmi_si found none: modprobe is not installed in the memory OS)",
        "ethtool is not installed in the memory OS: NIC firmware versions not read",
    ]


def test_a_failing_tool_and_a_machine_without_a_bmc_are_notes(tmp_path):
    sys_root, proc_root = _server(tmp_path)
    (tmp_path / "dev").mkdir()
    tools = Tools({
        ("dmidecode", "-t", "17"): (1, "# dmidecode 3.4\nScanning /dev/mem for entry point.\n"
                                       "/dev/mem: No such file or directory\n"),
        ("modprobe", "-q", "ipmi_devintf"): (0, ""),
        ("modprobe", "-q", "ipmi_si"): (1, ""),
    })  # fmt: skip
    found = facts.collect_full(sys_root, proc_root, lldp_s=0, run=tools, dev_root=tmp_path / "dev")
    assert "dmidecode -t 17 failed (exit status 1): /dev/mem: No such file or directory" in found["notes"]
    assert "no BMC answers in-band (ipmi_si found none: modprobe ipmi_si exit status 1)" in found["notes"]
    assert not any(call[0] == "ipmitool" for call in tools.calls)


def test_the_bmc_is_found_on_the_first_lan_channel(tmp_path):
    (tmp_path / "ipmi0").touch()
    tools = Tools({
        ("ipmitool", "lan", "print", "1"): (1, fixture("ipmitool-lan-print-not-lan.txt")),
        ("ipmitool", "lan", "print", "2"): (0, fixture("ipmitool-lan-print.txt")),
    })  # fmt: skip
    notes = []
    assert facts.bmc(tools, notes, tmp_path)["address"] == "10.20.30.40" and notes == []
    no_device = Tools({("ipmitool", "lan", "print", "1"): (1, fixture("ipmitool-no-device.txt"))})
    assert facts.bmc(no_device, notes, tmp_path) == {}
    assert notes == ["ipmitool found no LAN channel on the BMC (Could not open device at /dev/ipmi0 or /dev/ipmi/0 "
                     "or /dev/ipmidev/0: No such file or directory)"]  # fmt: skip
    assert [call[-1] for call in no_device.calls] == ["1"]  # no device: the other channels are not tried


def test_cpu_falls_back_to_cpuinfo_without_sysfs_topology(tmp_path):
    _write(tmp_path / "sys/devices/system/cpu/online", "0-3\n")
    blocks = "".join(f"processor\t: {n}\nmodel name\t: AMD EPYC 7313\nphysical id\t: {n // 2}\ncore id\t\t: {n % 2}\n"
                     "cpu MHz\t\t: 2994.372\n\n" for n in range(4))  # fmt: skip
    _write(tmp_path / "proc/cpuinfo", blocks)
    assert facts.cpu(tmp_path / "sys", tmp_path / "proc") == {
        "model": "AMD EPYC 7313", "sockets": 2, "cores": 4, "threads": 4, "mhz": 2994
    }  # fmt: skip


def test_transport_of_virtio_scsi_and_unknown_disks(tmp_path):
    sys_root = tmp_path / "sys"
    _link(sys_root / "block/vda/device", sys_root / "devices/pci0000:00/0000:00:02.0/virtio1")
    _link(sys_root / "block/vda/device/driver", sys_root / "bus/virtio/drivers/virtio_blk")
    _link(sys_root / "block/sda/device", sys_root / "devices/pci0000:00/0000:00:03.0/virtio2/host0/target0:0:0/0:0:0:0")
    _link(sys_root / "block/sdb/device", sys_root / "devices/pci0000:00/0000:00:04.0/host1/port-1:0/end_device-1:0/"
                                                   "target1:0:0/1:0:0:0")  # fmt: skip
    (sys_root / "block/sdb/device/vpd_pg89").write_bytes(b"\x00\x89")
    _link(sys_root / "block/mmcblk0/device", sys_root / "devices/platform/mmc0/mmc0:0001")
    assert [facts.transport(sys_root, n) for n in ("vda", "sda", "sdb", "mmcblk0")] == [
        "virtio", "scsi", "sata", "unknown"
    ]  # fmt: skip


# -- the tool readers on their fixtures -------------------------------------------------------------------------


def test_dmidecode_modules_leave_out_empty_slots_and_read_the_extended_size():
    modules = parsers.dmidecode_memory(fixture("dmidecode-t17.txt"))
    assert modules[0] == {
        "slot": "A1",
        "size_bytes": 32 << 30,
        "speed_mts": 3200,
        "type": "DDR4",
        "manufacturer": "Samsung",
        "serial": "H0AB12CD",
        "part_number": "M393A4K40DB3-CWE",
    }
    # Dell and others report the JEDEC manufacturer code instead of a name; it is kept as it is.
    assert modules[1]["manufacturer"] == "00CE00B300CE" and modules[1]["size_bytes"] == 16 << 30
    assert len(modules) == 3


def test_dmidecode_wording_of_older_versions_and_vendor_placeholders():
    text = ("# dmidecode 2.12\nSMBIOS 2.7 present.\n\nHandle 0x0011, DMI type 17, 34 bytes\nMemory Device\n"
            "\tSize: 16384 MB\n\tLocator: DIMM_A1\n\tBank Locator: NODE 1\n\tType: DDR3\n\tSpeed: 1600 MHz\n"
            "\tManufacturer: Not Specified\n\tSerial Number: 00000000\n\tPart Number: NO DIMM\n\n"
            "Handle 0x0012, DMI type 17, 34 bytes\nMemory Device\n\tSize: No Module Installed\n\tLocator: DIMM_A2\n\n"
            "Handle 0x0013, DMI type 17, 34 bytes\nMemory Device\n\tSize: 8192 MB\n\tLocator: Not Specified\n"
            "\tBank Locator: BANK 1\n\tSpeed: Unknown\n\tManufacturer: To Be Filled By O.E.M.\n")  # fmt: skip
    assert parsers.dmidecode_memory(text) == [
        {"slot": "DIMM_A1", "size_bytes": 16 << 30, "speed_mts": 1600, "type": "DDR3", "manufacturer": "",
         "serial": "", "part_number": ""},
        {"slot": "BANK 1", "size_bytes": 8 << 30, "speed_mts": None, "type": "", "manufacturer": "", "serial": "",
         "part_number": ""},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "status", "expected"),
    [
        ("smartctl-sata-passed.json", 0, {"available": True, "passed": True, "detail": "SMART health check passed"}),
        ("smartctl-nvme-passed.json", 0, {"available": True, "passed": True, "detail": "SMART health check passed"}),
        ("smartctl-hdd-failing.json", 24, {"available": True, "passed": False,
                                           "detail": "SMART health check FAILED: the disk reports it is failing"}),
        ("smartctl-virtio.json", 1, {"available": False, "passed": None,
                                     "detail": "/dev/vda: Unable to detect device type"}),
    ],
)  # fmt: skip
def test_smartctl_json(name, status, expected):
    assert parsers.smart(fixture(name), status) == expected


def test_smartctl_without_json_or_with_smart_switched_off():
    assert parsers.smart("smartctl: unrecognized option '--json'\n", 1)["detail"] == (
        "smartctl printed no JSON (exit status 1)"
    )
    off = json.loads(fixture("smartctl-sata-passed.json"))
    off["smart_support"]["enabled"] = False
    del off["smart_status"]
    assert parsers.smart(json.dumps(off), 0) == {
        "available": False, "passed": None, "detail": "the disk does not support SMART, or it is switched off"
    }  # fmt: skip


def test_ethtool_and_ipmitool_readers():
    assert parsers.ethtool_firmware(fixture("ethtool-i-virtio.txt")) == ""
    assert parsers.ethtool_firmware(fixture("ethtool-i-ixgbe.txt")) == "0x800008a4, 1.2028.0"
    assert parsers.ipmi_lan(fixture("ipmitool-lan-print.txt")) == {
        "address": "10.20.30.40", "mac": "3c:ec:ef:12:34:56", "source": "static"
    }  # fmt: skip
    unconfigured = fixture("ipmitool-lan-print.txt").replace("10.20.30.40", "0.0.0.0").replace("Static", "DHCP")
    assert parsers.ipmi_lan(unconfigured) == {"address": "", "mac": "3c:ec:ef:12:34:56", "source": "dhcp"}
    users = parsers.ipmi_users(fixture("ipmitool-user-list.txt"))
    assert users[:4] == [(1, "", "Unknown (0x00)"), (2, "admin", "ADMINISTRATOR"), (3, "", "ADMINISTRATOR"),
                         (4, "", "Unknown (0x00)")]  # fmt: skip
    assert len(users) == 63


def test_hdparm_security_states():
    ssd = parsers.hdparm_security(fixture("hdparm-I-ssd-not-frozen.txt"))
    assert ssd == {"present": True, "supported": True, "enabled": False, "locked": False, "frozen": False,
                   "expired": False, "enhanced": True, "erase_minutes": 2, "enhanced_minutes": 2}  # fmt: skip
    hdd = parsers.hdparm_security(fixture("hdparm-I-hdd-frozen.txt"))
    assert (hdd["frozen"], hdd["supported"], hdd["erase_minutes"]) == (True, True, 390)
    assert parsers.hdparm_security("\n/dev/vda:\n HDIO_DRIVE_CMD(identify) failed: Inappropriate ioctl\n") == {
        "present": False, "supported": False, "enabled": False, "locked": False, "frozen": False, "expired": False,
        "enhanced": False, "erase_minutes": 0, "enhanced_minutes": 0,
    }  # fmt: skip


def test_nvme_readers():
    assert parsers.nvme_can_format(fixture("nvme-id-ctrl.json")) is True
    assert parsers.nvme_can_format('{"oacs": 0}') is False and parsers.nvme_can_format("not json") is False
    assert parsers.nvme_lba_format(fixture("nvme-id-ns.json")) == 0
    assert parsers.nvme_lba_format('{"flbas": 1}') == 1 and parsers.nvme_lba_format('{"flbas": 33}') == 17
    assert parsers.nvme_lba_format("{}") is None


# -- LLDP -------------------------------------------------------------------------------------------------------


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!H", kind << 9 | len(value)) + value


def lldp_frame(*tlvs: bytes, source: bytes = bytes.fromhex("001c73aabbcd")) -> bytes:
    return lldp.LLDP_MULTICAST + source + b"\x88\xcc" + b"".join(tlvs) + _tlv(0, b"")


# What an Arista leaf sends: chassis MAC, port by interface name, TTL, port description, system name, system
# description, capabilities, a management address and an IEEE 802.1 port VLAN TLV.
ARISTA = lldp_frame(
    _tlv(1, b"\x04" + bytes.fromhex("001c73aabbcc")),
    _tlv(2, b"\x05Ethernet12"),
    _tlv(3, b"\x00\x78"),
    _tlv(4, b"web01 eno1"),
    _tlv(5, b"leaf-12.dc1"),
    _tlv(6, b"Arista Networks EOS version 4.28.3M running on an Arista Networks DCS-7050SX3-48YC8"),
    _tlv(7, b"\x00\x14\x00\x14"),
    _tlv(8, b"\x05\x01\x0a\x00\x00\x0c\x02\x00\x00\x00\x01\x00"),
    _tlv(127, b"\x00\x80\xc2\x01\x00\x0a"),
)


def test_lldp_frame_of_a_switch():
    assert lldp.parse(ARISTA) == NEIGHBOUR


def test_lldp_identifier_subtypes_and_malformed_frames():
    by_address = lldp_frame(_tlv(1, b"\x05\x01\xc0\x00\x02\x07"), _tlv(2, b"\x03" + bytes.fromhex("0a0b0c0d0e0f")))
    assert lldp.parse(by_address) == {"chassis_id": "192.0.2.7", "system_name": "", "port_id": "0a:0b:0c:0d:0e:0f",
                                      "port_description": ""}  # fmt: skip
    local = lldp_frame(_tlv(1, b"\x07SW-CORE-1"), _tlv(2, b"\x07" + b"\x01\x02\xff"))
    assert lldp.parse(local)["chassis_id"] == "SW-CORE-1" and lldp.parse(local)["port_id"] == "0102ff"
    tagged = ARISTA[:12] + b"\x81\x00\x00\x64" + ARISTA[12:]
    assert lldp.parse(tagged) == NEIGHBOUR
    assert lldp.parse(ARISTA[:44]) is None  # cut inside a TLV
    assert lldp.parse(lldp_frame(_tlv(2, b"\x05Ethernet12"))) is None  # no chassis ID
    assert lldp.parse(ARISTA[:12] + b"\x08\x00" + ARISTA[14:]) is None  # IPv4, not LLDP
    assert lldp.parse(b"") is None


@pytest.fixture
def raw_sockets():
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(lldp.ETH_P_LLDP)).close()
    except PermissionError:
        pytest.skip("raw sockets need CAP_NET_RAW (run as root)")


def test_listen_hears_a_frame_on_the_loopback_and_stops_early(raw_sockets):
    sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sender.bind(("lo", 0))

    def send_soon():
        time.sleep(0.3)
        sender.send(ARISTA)

    threading.Thread(target=send_soon, daemon=True).start()
    began = time.monotonic()
    heard, notes, listened = lldp.listen(["lo"], 10)
    sender.close()
    assert heard == {"lo": NEIGHBOUR} and notes == []
    assert 0.25 < listened < 5 and time.monotonic() - began < 5


def test_listen_gives_up_after_its_time_and_says_so(raw_sockets):
    heard, notes, listened = lldp.listen(["lo", "no-such-nic0"], 0.3)
    assert heard == {} and 0.3 <= listened < 2
    assert notes == ["cannot listen for LLDP on no-such-nic0: No such device", "no LLDP frame heard on lo in 0 s"]


# -- sandbox and the task ---------------------------------------------------------------------------------------


def test_sandbox_full_facts_are_what_machine_json_declares(sandbox):
    make_disk(sandbox, "nvme0n1", 4 * MIB)
    make_disk(sandbox, "sda", 4 * MIB)
    (sandbox.root / "machine.json").write_text(json.dumps({
        "cpus": 8,
        "nics": [{"name": "eno1", "mac": "52:54:00:00:00:01", "speed_mbps": 25000, "driver": "mlx5_core",
                  "firmware": "22.31.1014", "lldp": {"chassis_id": "lab-switch", "port_id": "swp1"}},
                 {"name": "eno2", "mac": "52:54:00:00:00:02", "link": False}],
        "disks": {"sda": {"smart": {"available": True, "passed": False, "detail": "declared failing"}}},
        "cpu": {"model": "Lab CPU", "sockets": 2},
        "memory_modules": [{"slot": "A1", "size_bytes": 1 << 34, "speed_mts": 3200, "type": "DDR4",
                            "manufacturer": "Lab", "serial": "1", "part_number": "LAB-16G"}],
        "firmware": {"bios_version": "2.1"},
        "bmc": {"address": "10.0.0.9", "mac": "52:54:00:ff:00:01", "source": "static"},
    }))  # fmt: skip
    found = sandbox.facts_full(5)
    assert [(d["name"], d["transport"]) for d in found["disks"]] == [("nvme0n1", "nvme"), ("sda", "sata")]
    assert found["disks"][0]["smart"] == {
        "available": False,
        "passed": None,
        "detail": "a sandbox disk image has no SMART",
    }
    assert found["disks"][1]["smart"]["passed"] is False
    assert found["nics"][0]["lldp"] == {"chassis_id": "lab-switch", "system_name": "", "port_id": "swp1",
                                        "port_description": ""}  # fmt: skip
    assert (found["nics"][0]["driver"], found["nics"][0]["firmware"]) == ("mlx5_core", "22.31.1014")
    assert found["nics"][1]["lldp"] is None
    assert found["cpu"] == {"model": "Lab CPU", "sockets": 2, "cores": 8, "threads": 8, "mhz": 0}
    assert found["firmware"]["bios_version"] == "2.1" and found["firmware"]["board_serial"] == ""
    assert found["bmc"]["address"] == "10.0.0.9" and found["memory_modules"][0]["slot"] == "A1"
    assert found["lldp_listened_s"] == 1.0 and found["notes"] == []
    # Every key of the full facts is there, as on a real machine.
    assert set(found) == {"cpus", "memory_bytes", "disks", "nics", "dmi", "efi", "cpu", "memory_modules", "pci",
                          "firmware", "bmc", "lldp_listened_s", "notes"}  # fmt: skip


def test_commission_task_returns_the_full_facts(sandbox, ctx):
    make_disk(sandbox, "sda", 2 * MIB)
    result = run_task(ctx, "commission", {"lldp_s": 1})
    assert result.ok, result
    found = json.loads(result.output)
    assert found["disks"][0]["transport"] == "sata" and "memory_modules" in found
    assert "1 disk(s)" in ctx.channel._message
    assert run_task(ctx, "commission", {"lldp_s": 301}).reason == "InvalidParams"
    assert run_task(ctx, "commission", {"lldp_s": "soon"}).message == "lldp_s: a number >= 0 is required"
    assert "commission" in TASKS and run_task(ctx, "inventory", {}).ok


def test_facts_too_large_for_a_result_shed_minor_pci_functions_first():
    pci = [
        {
            "address": f"0000:{n:02x}:00.0",
            "class": "088000" if n % 2 else "020000",
            "vendor_id": "8086",
            "device_id": "2083",
            "vendor": "Intel Corporation",
            "device": "x" * 200,
            "driver": "",
        }
        for n in range(200)
    ]
    found = {"disks": [], "nics": [], "pci": pci, "notes": []}
    fitted = json.loads(fit_facts(found, limit=40_000))
    assert {d["class"] for d in fitted["pci"]} == {"020000"} and len(fitted["pci"]) == 100
    assert fitted["notes"] == ["100 PCI bridges and system peripherals left out so the facts fit"]
    bare = json.loads(fit_facts(found, limit=5_000))
    assert bare["pci"] == [] and len(bare["notes"]) == 2
    assert json.loads(fit_facts(found, limit=10**6))["pci"] == pci


def test_collect_full_on_this_host_has_the_shape():
    found = facts.collect_full(lldp_s=0.2)
    assert set(found["cpu"]) == {"model", "sockets", "cores", "threads", "mhz"} and found["cpu"]["threads"] >= 1
    for disk in found["disks"]:
        assert disk["transport"] in ("nvme", "sata", "sas", "scsi", "virtio", "usb", "unknown")
        assert set(disk["smart"]) == {"available", "passed", "detail"}
    for nic in found["nics"]:
        assert {"driver", "firmware", "lldp"} <= set(nic)
    assert all(isinstance(note, str) for note in found["notes"])
    json.dumps(found)
