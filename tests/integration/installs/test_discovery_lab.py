"""Discovery end to end, as `make run` does it: a lab machine inventory does not know powers on once its site's
TFTP root discovers, boots the discovering default, and the real agent zipapp registers it with the live
control plane; a technician accepts it, and its agent powers it off at its next poll. Its BMC then answers with
the site's default credentials, at the address its memory OS reported."""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import call_command

from audit.service import Actor
from installs import discovery, discovery_boot
from inventory import power
from inventory.models import DiscoveredMachine, DiscoveryState, Machine, Site
from provisioner.lab.datacentre import Lab, LabConfig, MachineConfig

NEW_MACS = ["52:54:00:fe:00:01", "52:54:00:fe:00:02"]


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s")


@pytest.fixture
def running_lab(tmp_path, live_server):
    config = LabConfig(
        [
            MachineConfig("known-01", "r1", 1, ["52:54:00:ab:00:01"]),
            MachineConfig("new-01", "r1", 3, NEW_MACS, firmware="uefi", unknown=True),
        ],
        tmp_path / "lab",
        base_url=live_server.url,
    )
    lab = Lab(config).start()
    yield lab
    lab.stop()


def test_an_unknown_lab_machine_registers_is_accepted_and_powers_off(running_lab, settings):
    settings.DISCOVERY_POLL_S = 0.5
    call_command("load_demo", "--lab-inventory", str(running_lab.config.inventory_path), stdout=io.StringIO())
    site = Site.objects.get(slug="lab")
    assert site.discovery and not DiscoveredMachine.objects.exists()
    discovery_boot.reconcile(site.pk)  # what the site's worker does once load_demo's save commits

    new = running_lab.machines["new-01"]
    entry = wait(lambda: DiscoveredMachine.objects.filter(mac=NEW_MACS[0]).first(), 60, "no registration")
    assert entry.state == DiscoveryState.WAITING and entry.address == "127.0.0.1"
    assert [nic["mac"] for nic in entry.facts["nics"]] == NEW_MACS
    assert {disk["serial"] for disk in entry.facts["disks"]} == {"LAB-0002-SSD", "LAB-0002-HDD"}
    assert entry.facts["bmc"] == {"address": new.bmc.address, "port": new.bmc.port}
    argv = new.agent_commands[-1]
    assert "--discover" in argv and all("token" not in arg for arg in argv)

    machine = discovery.accept(entry.pk, discovery.Placement("new-01", site.racks.get(name="r1"), 3), Actor.system("t"))
    new.wait_for("host-poweroff", timeout=30)  # its agent polled, was told to power off, and did
    entry.refresh_from_db()
    assert entry.state == DiscoveryState.ACCEPTED and entry.pending_task is None
    assert new.agent_exit_codes[-1] == 0

    machine = Machine.objects.select_related("bmc").get(pk=machine.pk)
    assert (machine.bmc.address, machine.bmc.port, machine.bmc.username) == (new.bmc.address, new.bmc.port, "")
    # The site's default credentials log in to the new machine's BMC: its power is what the agent left.
    assert power.perform(machine, "status", Actor.system("t")).endswith("power is off")
    # Its MAC now has a local-boot file: powered on from the network again, it never rediscovers itself.
    discovery_boot.reconcile(site.pk)
    assert NEW_MACS[0] in discovery_boot.pxe.local_macs(running_lab.config.tftp_root)
