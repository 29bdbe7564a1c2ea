"""The lab's switched PDUs: one per rack, each machine fed from an outlet. Loaded into inventory by load_demo,
a machine whose BMC is dead is still switched, through its outlet, and the lab machine's mains follow."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from audit.models import AuditEntry
from audit.service import Actor
from inventory import power
from inventory.models import Machine, Pdu
from provisioner.lab.bmc import LoopbackBmc
from provisioner.lab.datacentre import Lab, LabConfig, MachineConfig
from provisioner.lab.pdu import LoopbackPdu
from provisioner.pdu import PduTarget, profile
from provisioner.pdu.driver import PduOutletDriver
from tests import redis_claim


def test_an_outlet_switches_the_mains_of_the_machine_behind_it():
    bmc = LoopbackBmc("root", "pw-Lab-3x", powered_on=True)
    pdu = LoopbackPdu("lab-comm", outlets=8).start()
    pdu.on_switch.append(lambda outlet, powered: bmc.mains(powered) if outlet == 5 else None)
    boots = []
    bmc.on_power_on.append(boots.append)
    try:
        driver = PduOutletDriver(PduTarget("127.0.0.1", pdu.port, community="lab-comm", timeout_s=1), profile("apc"), 5)
        driver.power_off()
        assert bmc.powered_on is False and pdu.powered[5] is False
        driver.power_on()
        assert bmc.powered_on is True and len(boots) == 1  # power restored: the firmware starts
        driver.power_cycle()
        assert bmc.powered_on is True and len(boots) == 2
        PduOutletDriver(
            PduTarget("127.0.0.1", pdu.port, community="lab-comm", timeout_s=1), profile("apc"), 6
        ).power_off()
        assert bmc.powered_on is True  # another machine's outlet
    finally:
        pdu.stop()


@pytest.mark.django_db
def test_load_demo_takes_the_labs_pdus_and_a_dead_bmc_falls_back_to_them(tmp_path, stub, settings):
    settings.BMC_TIMEOUT_S = 0.5
    settings.BMC_MIN_INTERVAL_S = 0.01
    redis_claim.flush()
    specs = [
        MachineConfig("good-01", "r1", 1, ["52:54:00:ab:00:01"]),
        MachineConfig("dead-02", "r1", 3, ["52:54:00:ab:00:02"], faults=["bmc_dead"]),
    ]
    lab = Lab(LabConfig(specs, tmp_path / "lab", base_url=stub.url, install_s=0.2)).start()
    try:
        call_command("load_demo", "--lab-inventory", str(lab.config.inventory_path))
        call_command("load_demo", "--lab-inventory", str(lab.config.inventory_path))  # idempotent
        pdu = Pdu.objects.get()
        assert (pdu.name, pdu.profile, pdu.port) == ("r1-pdu", "apc", lab.pdus["r1-pdu"].port)
        assert pdu.get_community() == lab.pdus["r1-pdu"].community
        dead = Machine.objects.get(hostname="dead-02")
        assert [(o.pdu.name, o.outlet) for o in dead.pdu_outlets.all()] == [("r1-pdu", 2)]

        line = power.perform(dead, "cycle", Actor.system("test"))
        assert "power cycled through PDU r1-pdu outlet 2, because the BMC did not answer" in line
        assert lab.machines["dead-02"].bmc.powered_on is True
        line = power.perform(dead, "off", Actor.system("test"))
        assert "through PDU r1-pdu outlet 2" in line
        assert lab.machines["dead-02"].bmc.powered_on is False and lab.pdus["r1-pdu"].powered[2] is False
        assert lab.pdus["r1-pdu"].powered[1] is True  # good-01's outlet untouched
        entry = AuditEntry.objects.filter(action="machine.off", object_id=str(dead.pk)).get()
        assert entry.details["fallback"] is True and lab.pdus["r1-pdu"].community not in str(entry.details)
    finally:
        lab.stop()
        redis_claim.flush()
