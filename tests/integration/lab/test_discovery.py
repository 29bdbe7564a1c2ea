"""The lab's side of discovery: a machine unknown to inventory that network-boots a discovering default runs its
agent in discovery mode (``--discover --url``), a known machine's local-boot file keeps it on its disk, and the
datacentre's unknown machines power on once the site discovers. Up to the agent's invocation: what the agent
then does is the agent's own tests' business, so these machines run a stand-in that records how it was started."""

from __future__ import annotations

import json
import sys
import time

import pytest

from provisioner import pxe
from provisioner.bmc import BmcTarget, BootDevice, PowerState, get_driver
from provisioner.lab.datacentre import Lab, LabConfig, MachineConfig
from provisioner.lab.machine import LabMachine
from tests.integration.lab.conftest import MACS, driver

BASE = "http://127.0.0.1:8999"
# The stand-in agent: records its argv and the command line it was given, then powers the machine off as the
# discovery agent does after its poweroff task (the sandbox asks the lab to, by a file).
STAND_IN = (
    "import json, pathlib, sys\n"
    "argv = sys.argv[1:]\n"
    "cmdline = pathlib.Path(argv[argv.index('--cmdline') + 1]).read_text()\n"
    "pathlib.Path('argv.json').write_text(json.dumps({'argv': argv, 'cmdline': cmdline}))\n"
    "pathlib.Path('poweroff-requested').write_text('')\n"
)


def discover(root) -> None:
    """The control plane's reconcile of a discovering site, as far as the defaults go."""
    cmdline = pxe.discovery_cmdline(BASE, "console=ttyS0,115200n8")
    pxe.write_defaults(root, pxe.DiscoveryBoot("images/memory-os/vmlinuz", "images/memory-os/initrd", cmdline))


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_an_unknown_machine_runs_its_agent_in_discovery_mode(tmp_path, tftp, firmware):
    discover(tftp)
    machine = LabMachine(
        "new01", MACS, tmp_path / "new01", tftp, firmware=firmware, agent_argv=[sys.executable, "-c", STAND_IN],
        extra_disks=("sdb",), disk_facts={"sda": {"serial": "SER-A"}, "sdb": {"serial": "SER-B"}},
        bmc_facts={"address": "127.0.0.1", "port": 623},
    ).start()  # fmt: skip
    try:
        bmc = driver(machine)
        bmc.set_boot_device(BootDevice.PXE, once=True)
        bmc.power_on()
        machine.wait_for("host-poweroff", timeout=20)
        ran = json.loads((machine.workdir / "argv.json").read_text())
        argv = ran["argv"]
        assert argv[argv.index("--discover") :][:3] == ["--discover", "--url", BASE]
        assert "provisioner.mode=discover" in ran["cmdline"] and f"provisioner.url={BASE}" in ran["cmdline"]
        assert "BOOTIF=01-52-54-00-1a-00-01" in ran["cmdline"] and "provisioner.token" not in ran["cmdline"]
        assert bmc.power_state() is PowerState.OFF, "the agent's poweroff powered the machine off"
        facts = json.loads((machine.workdir / "machine.json").read_text())
        assert [n["mac"] for n in facts["nics"]] == MACS
        assert {name: disk["serial"] for name, disk in facts["disks"].items()} == {"sda": "SER-A", "sdb": "SER-B"}
        assert facts["bmc"] == {"address": "127.0.0.1", "port": 623}
        assert sorted(p.name for p in (machine.workdir / "disks").iterdir()) == ["sda.img", "sdb.img"]
    finally:
        machine.stop()


def test_a_known_machine_with_its_local_boot_file_never_starts_an_agent(make_machine, tftp):
    discover(tftp)
    pxe.ensure_local(tftp, MACS[0])
    machine = make_machine("uefi", agent_argv=[sys.executable, "-c", STAND_IN])
    bmc = driver(machine)
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()
    machine.wait_for("halted")
    assert "local-boot" in machine.phases() and "agent-started" not in machine.phases()


def test_the_datacentres_unknown_machines_power_on_once_the_site_discovers(tmp_path):
    config = LabConfig(
        [
            MachineConfig("known-01", "r1", 1, ["52:54:00:ab:00:01"]),
            MachineConfig("new-01", "r1", 3, ["52:54:00:fe:00:01", "52:54:00:fe:00:02"], unknown=True),
        ],
        tmp_path / "lab",
        base_url=BASE,
    )
    lab = Lab(config).start()
    try:
        inventory = json.loads(config.inventory_path.read_text())
        assert [m["hostname"] for m in inventory["machines"]] == ["known-01"], "discovery finds it, not the file"
        assert [m["name"] for m in inventory["unknown_machines"]] == ["new-01"]
        site = inventory["site"]
        assert site["discovery"] is True and site["provisioning_networks"] == "127.0.0.0/8"
        new = lab.machines["new-01"]
        # Its BMC takes the site's default credentials, which is what an accepted machine's BMC row uses.
        bmc = get_driver("ipmi", BmcTarget(new.bmc.address, new.bmc.port, site["bmc_username"], site["bmc_password"]))
        assert bmc.power_state() is PowerState.OFF
        time.sleep(1.0)
        assert bmc.power_state() is PowerState.OFF, "it waits for the site to discover"
        discover(config.tftp_root)
        new.wait_for("agent-started", timeout=15)
        argv = new.agent_commands[-1]
        assert argv[argv.index("--discover") :][:3] == ["--discover", "--url", BASE]
        facts = json.loads((new.workdir / "machine.json").read_text())
        assert {d["serial"] for d in facts["disks"].values()} == {"LAB-0002-SSD", "LAB-0002-HDD"}
        assert facts["bmc"] == {"address": new.bmc.address, "port": new.bmc.port}
        assert "power-on" not in lab.machines["known-01"].phases(), "a known machine is not switched on"
    finally:
        lab.stop()
