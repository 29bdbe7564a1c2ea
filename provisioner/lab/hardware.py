"""What a lab machine's hardware looks like to commissioning: the parts of `machine.json` the agent's sandbox
reports as full facts (provisioner/agent/facts.py collect_full_sandbox). Derived from the host name, so every
lab machine has its own serials, and two commissionings of one machine agree unless something was changed."""

from __future__ import annotations

import hashlib

GIB = 1 << 30


def _digits(hostname: str, n: int = 6) -> str:
    return hashlib.sha256(hostname.encode()).hexdigest()[:n].upper()


def describe(hostname: str, macs: list[str], *, disk_names: list[str], switch: str = "", port: int = 0) -> dict:
    """cpu, memory_modules, pci, firmware, per-NIC driver/firmware/LLDP, per-disk model/serial/transport/SMART.
    ``switch`` and ``port``: the leaf switch the first NIC is cabled to (its LLDP neighbour); blank: none heard."""
    tag = _digits(hostname)
    nics = []
    for i, mac in enumerate(macs):
        lldp = None
        if switch and i == 0:
            lldp = {"chassis_id": "02:1a:b0:00:00:01", "system_name": switch, "port_id": f"Ethernet{port}",
                    "port_description": f"{hostname} eno1"}  # fmt: skip
        nics.append({"name": f"eno{i + 1}", "mac": mac, "link": i == 0, "speed_mbps": 10000 if i == 0 else None,
                     "driver": "ixgbe", "firmware": "0x800008a4, 1.2028.0", "lldp": lldp})  # fmt: skip
    disks = {
        name: {"model": "LAB SSD 480GB", "serial": f"LAB{tag}-{name.upper()}", "wwn": f"naa.5002538f{tag}{i:02d}",
               "rotational": False, "transport": "sata",
               "smart": {"available": True, "passed": True, "detail": "SMART health check passed"}}
        for i, name in enumerate(disk_names)
    }  # fmt: skip
    return {
        "cpus": 8,
        "memory_bytes": 32 * GIB * 98 // 100,
        "cpu": {"model": "Lab Xeon E-2388G @ 3.20GHz", "sockets": 1, "cores": 8, "threads": 8, "mhz": 3200},
        "memory_modules": [
            {"slot": f"DIMM_A{i + 1}", "size_bytes": 8 * GIB, "speed_mts": 3200, "type": "DDR4", "manufacturer": "Lab",
             "serial": f"M{tag}{i}", "part_number": "LAB-8G-3200"}
            for i in range(4)
        ],
        "pci": [
            {"address": "0000:01:00.0", "class": "020000", "vendor_id": "8086", "device_id": "10fb",
             "vendor": "Intel Corporation", "device": "82599ES 10-Gigabit SFI/SFP+ Network Connection",
             "driver": "ixgbe"},
            {"address": "0000:02:00.0", "class": "010601", "vendor_id": "8086", "device_id": "a352",
             "vendor": "Intel Corporation", "device": "Cannon Lake PCH SATA AHCI Controller", "driver": "ahci"},
        ],
        "firmware": {"bios_vendor": "Lab BIOS Inc.", "bios_version": "1.4", "bios_date": "06/07/2025",
                     "board_vendor": "Provisioner Lab", "board_name": "LAB-BOARD-1", "board_serial": f"BRD{tag}",
                     "chassis_serial": f"CH{tag}"},
        "nics": nics,
        "disks": disks,
    }  # fmt: skip
