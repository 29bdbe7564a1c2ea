"""Machines powered through PDU outlets by inventory.power: outlet-only machines, the fallback when a BMC
does not answer, the protected rule, the capability refusal, the CLI and the periodic sync, all against
snmpsim serving the recorded APC and Tripp Lite PDUs."""

from __future__ import annotations

import json
import time

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from audit.service import Actor
from inventory import power, power_sweep, protection
from inventory.models import Machine, PduOutlet
from provisioner.bmc import BmcTimeout, Capability
from provisioner.pdu import OutletMissing, profile, snmp
from tests import redis_claim
from tests.conftest import make_bmc, make_machine, make_pdu, make_rack

from .conftest import v2c

pytestmark = pytest.mark.django_db

BMC_PASSWORD = "bmc-pw-never-shown-4Rt"


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.BMC_MIN_INTERVAL_S = 0.01
    settings.BMC_TIMEOUT_S = 0.5
    settings.PDU_TIMEOUT_S = 2.0
    redis_claim.flush()
    yield
    redis_claim.flush()


def sim_pdu(snmpsim, recording="apc", *, version="v2c", site=None, **kw):
    defaults = {"profile": "apc" if recording == "apc" else "tripplite-ats", "port": snmpsim.port}
    if version == "v3":
        pdu = make_pdu(
            site,
            community="",
            snmp_version="v3",
            v3_user=snmpsim.V3_USER,
            v3_context=snmpsim.COMMUNITY[recording],
            **{**defaults, **kw},
        )
        pdu.set_auth_key(snmpsim.V3_AUTH_KEY)
        pdu.set_priv_key(snmpsim.V3_PRIV_KEY)
        pdu.save()
        return pdu
    return make_pdu(site, community=snmpsim.COMMUNITY[recording], **{**defaults, **kw})


def outlet_machine(pdu, *outlets, **kw):
    machine = make_machine(**kw)
    for outlet in outlets:
        PduOutlet.objects.create(machine=machine, pdu=pdu, outlet=outlet)
    return machine


def state(snmpsim, name, prof, outlet):
    return snmp.get(v2c(snmpsim, name), [profile(prof).state_oid_of(outlet)])[0]


def audit_of(machine):
    return list(AuditEntry.objects.filter(object_id=str(machine.pk)).order_by("id"))


def secrets(snmpsim):
    return [*snmpsim.COMMUNITY.values(), snmpsim.V3_AUTH_KEY, snmpsim.V3_PRIV_KEY, BMC_PASSWORD]


def assert_no_secret(snmpsim, *texts):
    for text in texts:
        for secret in secrets(snmpsim):
            assert secret not in text


@pytest.mark.parametrize("name, version", [("apc", "v2c"), ("tripplite", "v3")])
def test_a_machine_without_a_bmc_is_powered_through_its_outlet(snmpsim, name, version):
    pdu = sim_pdu(snmpsim, name, version=version, name="r1-pdu-a")
    machine = outlet_machine(pdu, 11)
    prof = pdu.profile
    actor = Actor.system("test")

    line = power.perform(machine, "off", actor)
    assert line == f"{machine.hostname}: powered off (through PDU r1-pdu-a outlet 11)"
    assert profile(prof).states[state(snmpsim, name, prof, 11)] == "off"
    machine.refresh_from_db()
    assert machine.power_state == "off"
    assert power.perform(machine, "status", actor).startswith(f"{machine.hostname}: power is off")
    assert power.perform(machine, "on", actor).startswith(f"{machine.hostname}: powered on")
    assert profile(prof).states[state(snmpsim, name, prof, 11)] == "on"
    assert power.perform(machine, "cycle", actor).startswith(f"{machine.hostname}: power cycled")
    assert "PDU r1-pdu-a outlet 11 answered in" in power.perform(machine, "ping", actor)

    entries = audit_of(machine)
    assert [e.action for e in entries] == ["machine.off", "machine.on", "machine.cycle", "machine.ping"]
    assert all(e.details["via"] == "pdu" and e.details["ok"] for e in entries)
    assert entries[0].details["outlets"] == "PDU r1-pdu-a outlet 11"
    assert_no_secret(snmpsim, json.dumps([e.details for e in entries]), line)


def test_boot_devices_are_refused_clearly_for_an_outlet_only_machine(snmpsim):
    machine = outlet_machine(sim_pdu(snmpsim), 12)
    assert power.capabilities_of(machine) == {Capability.POWER}
    with pytest.raises(power.PowerActionRefused) as caught:
        power.perform(machine, "pxe", Actor.system("test"))
    assert str(caught.value) == (
        f"{machine.hostname} has no BMC, only PDU outlets, which can do power on, off, cycle and status only, "
        "not boot from network or disk."
    )
    entry = audit_of(machine)[-1]
    assert entry.action == "machine.pxe" and entry.details["ok"] is False
    assert entry.details["refused"] == "capability"
    with pytest.raises(power.PowerActionRefused, match="not boot from network or disk"):
        power.enqueue_actions([machine], "disk", Actor.system("test"))


def test_a_protected_machine_refuses_off_through_its_outlet_too(snmpsim):
    machine = outlet_machine(sim_pdu(snmpsim), 2, protected=True)  # outlet 2 is recorded on
    for action in ("off", "cycle"):
        with pytest.raises(power.PowerActionRefused):
            power.perform(machine, action, Actor.system("test"))
    assert state(snmpsim, "apc", "apc", 2) == 1
    assert [e.details.get("refused") for e in audit_of(machine)] == ["protected", "protected"]
    assert protection.refused([machine], "on") == []


def test_a_hung_bmc_falls_back_to_the_outlet_and_says_so(snmpsim):
    from tests.servers import free_udp_port

    pdu = sim_pdu(snmpsim, name="r2-pdu-a")
    machine = outlet_machine(pdu, 15)  # recorded off
    # An IPMI BMC at a port where nothing listens: every call times out.
    make_bmc(machine, driver="ipmi", address="127.0.0.1", port=free_udp_port(), password=BMC_PASSWORD)
    machine.refresh_from_db()
    started = time.monotonic()
    line = power.perform(machine, "on", Actor.system("test"))
    assert time.monotonic() - started < 5
    assert line.startswith(f"{machine.hostname}: powered on through PDU r2-pdu-a outlet 15, because the BMC")
    assert state(snmpsim, "apc", "apc", 15) == 1
    line = power.perform(machine, "off", Actor.system("test"))
    assert "through PDU r2-pdu-a outlet 15, because the BMC" in line
    assert state(snmpsim, "apc", "apc", 15) == 2
    entry = audit_of(machine)[-1]
    assert entry.action == "machine.off" and entry.details["ok"] is True
    assert entry.details["fallback"] is True and entry.details["via"] == "pdu"
    assert entry.details["bmc_reason"] in ("BmcTimeout", "BmcUnreachable")
    assert_no_secret(snmpsim, json.dumps(entry.details), line)
    # Reading the status is not switched over: the BMC's failure is the answer.
    with pytest.raises(BmcTimeout):
        power.perform(machine, "status", Actor.system("test"))


def test_when_the_outlet_fails_too_both_failures_are_told(snmpsim):
    from tests.servers import free_udp_port

    machine = outlet_machine(sim_pdu(snmpsim, outlet_count=24), 20)  # the recorded PDU has 16 outlets
    make_bmc(machine, driver="ipmi", address="127.0.0.1", port=free_udp_port(), password=BMC_PASSWORD)
    machine.refresh_from_db()
    with pytest.raises(OutletMissing) as caught:
        power.perform(machine, "off", Actor.system("test"))
    assert "outlet 20 does not exist on this PDU" in str(caught.value)
    assert "tried after the BMC failed" in str(caught.value)
    entry = audit_of(machine)[-1]
    assert entry.details["ok"] is False and entry.details["reason"] == "PduOutletMissing"
    assert_no_secret(snmpsim, str(caught.value), json.dumps(entry.details))


def test_two_feeds_on_two_pdus_switch_together(snmpsim):
    site_pdu = sim_pdu(snmpsim, name="a-feed")
    b_feed = sim_pdu(snmpsim, "tripplite", site=site_pdu.site, name="b-feed")
    machine = outlet_machine(site_pdu, 10)
    PduOutlet.objects.create(machine=machine, pdu=b_feed, outlet=8)
    line = power.perform(machine, "off", Actor.system("test"))
    assert line.endswith("(through PDU a-feed outlet 10 and b-feed outlet 8)")
    assert state(snmpsim, "apc", "apc", 10) == 2 and state(snmpsim, "tripplite", "tripplite-ats", 8) == 1
    power.perform(machine, "on", Actor.system("test"))
    assert state(snmpsim, "apc", "apc", 10) == 1 and state(snmpsim, "tripplite", "tripplite-ats", 8) == 2


def test_the_cli_powers_an_outlet_only_machine(snmpsim, capsys):
    machine = outlet_machine(sim_pdu(snmpsim, "apc", version="v3", name="cli-pdu"), 9)
    call_command("bmc", machine.hostname, "off")
    assert "powered off (through PDU cli-pdu outlet 9)" in capsys.readouterr().out
    assert state(snmpsim, "apc", "apc", 9) == 2
    with pytest.raises(CommandError, match="only PDU outlets"):
        call_command("bmc", machine.hostname, "disk")


def test_the_power_sync_reads_outlet_only_machines(snmpsim):
    machine = outlet_machine(sim_pdu(snmpsim), 16)  # recorded on
    pdu_name = machine.pdu_outlets.get().pdu.name
    assert power.refresh_power_state(machine.pk) == f"{machine.hostname}: on (PDU {pdu_name} outlet 16)"
    machine.refresh_from_db()
    assert machine.power_state == "on"
    # The periodic sweep of the machine's site reads it the same way.
    Machine.objects.filter(pk=machine.pk).update(power_state="unknown")
    slug = machine.rack.site.slug
    assert power_sweep.sweep_site(slug) == f"{slug}: no BMC to read; 1 through PDU outlets"
    machine.refresh_from_db()
    assert machine.power_state == "on"


def test_an_outlet_beyond_the_pdus_count_is_refused_in_words(snmpsim):
    pdu = sim_pdu(snmpsim, name="small", outlet_count=8)
    rack = make_rack(pdu.site)
    outlet = PduOutlet(machine=make_machine(rack), pdu=pdu, outlet=9)
    with pytest.raises(ValidationError) as caught:
        outlet.full_clean()
    assert caught.value.message_dict["outlet"] == ["small has outlets 1–8; there is no outlet 9."]
    taken = PduOutlet.objects.create(machine=make_machine(rack, position_u=3), pdu=pdu, outlet=3)
    with pytest.raises(ValidationError) as caught:
        PduOutlet(machine=make_machine(rack, position_u=5), pdu=pdu, outlet=taken.outlet).full_clean()
    assert "That outlet already feeds another machine." in str(caught.value)
    other_site = make_machine()
    with pytest.raises(ValidationError, match="racked at"):
        PduOutlet(machine=other_site, pdu=pdu, outlet=4).full_clean()
