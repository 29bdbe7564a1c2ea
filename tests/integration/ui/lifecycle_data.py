"""Machines at a point of their lifecycle, with what commissioning would have recorded, for the lifecycle tests of
the pages, the REST API and the command line. inventory/facts.py writes these rows in production; here they are
written directly, as the tests need them."""

from __future__ import annotations

from django.utils import timezone

from audit.service import Actor
from installs import library
from installs import workflow as wf
from inventory.models import NIC, Machine, MachineFacts

GIB = 2**30

FULL_FACTS = {
    "cpus": 64,
    "memory_bytes": 512 * GIB,
    "cpu": {"model": "AMD EPYC 7543 32-Core Processor", "sockets": 2, "cores": 64, "threads": 128, "mhz": 2800},
    "memory_modules": [
        {"slot": f"DIMM_{bank}1", "size_bytes": 64 * GIB, "speed_mts": 3200, "type": "DDR4", "manufacturer": "Samsung",
         "serial": f"MOD-SERIAL-{bank}1", "part_number": "M393A8G40AB2-CWE"}
        for bank in "ABCDEFGH"
    ],
    "disks": [
        {"name": "nvme0n1", "path": "/dev/nvme0n1", "size_bytes": 3840 * 10**9, "model": "SAMSUNG MZQL23T8HCLS",
         "serial": "S64HNE0T123456", "wwn": "eui.36344730528012340025384500000001", "rotational": False,
         "transport": "nvme", "smart": {"available": True, "passed": True, "detail": ""}},
        {"name": "sda", "path": "/dev/sda", "size_bytes": 16 * 10**12, "model": "ST16000NM001G",
         "serial": "ZL2ABCDE", "wwn": "0x5000c500d1234567", "rotational": True, "transport": "sata",
         "smart": {"available": True, "passed": False, "detail": "Reallocated_Sector_Ct 2048"}},
    ],
    "nics": [
        {"name": "ens1f0", "mac": "b8:ce:f6:00:00:01", "link": True, "speed_mbps": 25000, "driver": "mlx5_core",
         "firmware": "16.35.2000", "lldp": {"chassis_id": "00:1c:73:aa:bb:cc", "system_name": "leaf-r07-a",
                                             "port_id": "Ethernet12/1", "port_description": "srv-r07-u12"}},
        {"name": "eno1", "mac": "b8:ce:f6:00:00:02", "link": False, "speed_mbps": None, "driver": "igb",
         "firmware": "1.63", "lldp": None},
    ],
    "pci": [
        {"address": "0000:41:00.0", "class": "Ethernet controller", "vendor_id": "15b3", "device_id": "1017",
         "vendor": "Mellanox Technologies", "device": "MT27800 Family [ConnectX-5]", "driver": "mlx5_core"},
    ],
    "firmware": {"bios_vendor": "Dell Inc.", "bios_version": "2.14.1", "bios_date": "03/15/2024",
                 "board_vendor": "Dell Inc.", "board_name": "0WN3CF", "board_serial": "BOARD-SN-1",
                 "chassis_serial": "CHASSIS-SN-1"},
    "bmc": {"address": "10.9.8.7", "mac": "d0:94:66:00:00:09", "source": "ipmitool lan print"},
    "dmi": {"vendor": "Dell Inc.", "product": "PowerEdge R7525", "serial": "SVC-TAG-1"},
    "efi": True,
    "notes": ["smartctl: /dev/sda has reallocated sectors"],
}  # fmt: skip


def put(machine: Machine, status: str, reason: str = "") -> Machine:
    """The machine at ``status``, as an operation or a person would have left it."""
    Machine.objects.filter(pk=machine.pk).update(status=status, status_reason=reason,
                                                 status_changed_at=timezone.now())  # fmt: skip
    machine.refresh_from_db()
    return machine


def commissioned(
    machine: Machine,
    *,
    cores: int,
    memory_gib: float,
    ssd: int = 0,
    hdd: int = 0,
    nvme: int = 0,
    nic_mbps: int | None = 10000,
    cpu: str = "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
    switch: str = "",
    port: str = "",
    lldp_seen: bool | None = None,
) -> Machine:
    """The summary columns and the PXE NIC's LLDP columns as a commissioning would have filled them."""
    Machine.objects.filter(pk=machine.pk).update(
        commissioned_at=timezone.now(),
        cpu_model=cpu,
        cpu_cores=cores,
        memory_bytes=int(memory_gib * GIB),
        disk_count=ssd + hdd + nvme,
        ssd_count=ssd,
        hdd_count=hdd,
        nvme_count=nvme,
        nic_max_speed_mbps=nic_mbps,
    )
    seen = bool(switch) if lldp_seen is None else lldp_seen
    NIC.objects.filter(machine=machine).update(
        switch_name=switch, switch_port=port, lldp_seen=seen, speed_mbps=nic_mbps, link=True, driver="mlx5_core"
    )
    machine.refresh_from_db()
    return machine


def facts_version(machine: Machine, version: int, facts: dict, changes: list | None = None) -> MachineFacts:
    return MachineFacts.objects.create(
        machine=machine, version=version, source=f"commissioning (install {100 + version})", facts=facts,
        changes=changes or [],
    )  # fmt: skip


def library_test_workflow(name: str):
    """A hardware test workflow of the library: the stock one under another name."""
    text = wf.stock_text_named("stock-test").replace("name: stock-test", f"name: {name}")
    return library.save_workflow(text, Actor.system("test"))[0]


def step_args(install, script: str) -> list:
    """The arguments the install's run_script step of ``script`` was planned with."""
    for step in install.steps.filter(task="run_script"):
        if str(step.params.get("script", "")).partition("@")[0] == script:
            return list(step.params.get("args") or [])
    raise AssertionError(f"install {install.pk} runs no {script}")
