"""Power changed outside provisioner, seen through PDU outlets: our own outlet actions raise no alert, an outlet
switched by someone else (at the PDU's own interface) does, on the next power read. Against snmpsim's APC."""

from __future__ import annotations

import pytest

from audit.service import Actor
from installs.models import Alert
from inventory import alerting, power
from inventory.models import PduOutlet
from provisioner.pdu import profile, snmp
from tests import redis_claim
from tests.conftest import make_machine, make_pdu

from .conftest import v2c

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.PDU_TIMEOUT_S = 2.0
    redis_claim.flush()
    yield
    redis_claim.flush()


def test_outlet_actions_are_ours_and_a_switch_at_the_pdu_is_not(snmpsim):
    pdu = make_pdu(None, community=snmpsim.COMMUNITY["apc"], profile="apc", port=snmpsim.port)
    machine = make_machine()
    PduOutlet.objects.create(machine=machine, pdu=pdu, outlet=13)
    actor = Actor.system("test")
    power.perform(machine, "on", actor)
    power.perform(machine, "off", actor)
    power.perform(machine, "cycle", actor)
    power.refresh_power_state(machine.pk)
    assert not Alert.objects.filter(machine=machine).exists()
    apc = profile("apc")
    snmp.set_integers(v2c(snmpsim, "apc"), [apc.command_oid_of(13)], [apc.off])  # someone at the PDU
    power.refresh_power_state(machine.pk)
    [alert] = Alert.objects.filter(machine=machine)
    assert alert.reason == alerting.POWER_CHANGED and "powered off, but provisioner had it on" in alert.message
