"""The outlet driver against snmpsim serving recorded walks of real PDUs (snmpsim-data): an APC AP7902B
(PowerNet-MIB, both the rPDU and the older sPDU objects) and a Tripp Lite PDUMH20ATNET (TRIPPLITE-PRODUCTS),
over SNMP v2c and v3. Every write is read back, by the driver and again here by a plain GET."""

from __future__ import annotations

import os
import time

import pytest

from provisioner.bmc import PowerState
from provisioner.bmc.base import BootDevice
from provisioner.bmc.errors import BmcAuthError, BmcUnsupported, CapabilityMissing
from provisioner.pdu import (
    OutletMissing,
    PduAuthError,
    PduTarget,
    PduTimeout,
    profile,
    snmp,
)
from provisioner.pdu.driver import PduOutletDriver
from tests.servers import free_udp_port

from .conftest import v2c, v3

# (profile, community the recording is served under, outlet recorded on, outlet recorded off)
PDUS = [
    pytest.param("apc", "apc", 1, 3, id="apc-rpdu"),
    pytest.param("apc-masterswitch", "apc", 2, 4, id="apc-spdu"),
    pytest.param("tripplite-ats", "tripplite", 16, 1, id="tripplite"),
]


def read(target, prof, outlet):
    """A plain GET of the outlet's state column, outside the driver."""
    return snmp.get(target, [profile(prof).state_oid_of(outlet)])[0]


@pytest.mark.parametrize("prof, community, on_outlet, off_outlet", PDUS)
def test_recorded_states_are_read(snmpsim, prof, community, on_outlet, off_outlet):
    target = v2c(snmpsim, community)
    assert PduOutletDriver(target, profile(prof), on_outlet).power_state() is PowerState.ON
    assert PduOutletDriver(target, profile(prof), off_outlet).power_state() is PowerState.OFF


@pytest.mark.parametrize("prof, community, on_outlet, off_outlet", PDUS)
@pytest.mark.parametrize("version", ["v2c", "v3"])
def test_off_on_cycle_are_written_and_read_back(snmpsim, prof, community, on_outlet, off_outlet, version):
    target = v2c(snmpsim, community) if version == "v2c" else v3(snmpsim, community)
    # Each case its own outlet, so the order the cases run in does not matter.
    outlet = {"apc": 5, "apc-masterswitch": 7, "tripplite-ats": 9}[prof] + (version == "v3")
    driver = PduOutletDriver(target, profile(prof), outlet)
    on, off = profile(prof).states_for(PowerState.ON), profile(prof).states_for(PowerState.OFF)

    driver.power_off()
    assert read(target, prof, outlet) in off
    assert driver.power_state() is PowerState.OFF
    driver.power_off()  # already off is success
    driver.power_on()
    assert read(target, prof, outlet) in on
    assert driver.power_state() is PowerState.ON
    driver.power_cycle()
    assert read(target, prof, outlet) in on | profile(prof).cycling
    # Cycling an outlet that is off powers it on.
    driver.power_off()
    driver.power_cycle()
    assert read(target, prof, outlet) in on


def test_two_outlets_act_together(snmpsim):
    target = v2c(snmpsim, "apc")
    driver = PduOutletDriver(target, profile("apc"), (13, 14))
    driver.power_off()
    assert [read(target, "apc", o) for o in (13, 14)] == [2, 2]
    assert driver.power_state() is PowerState.OFF
    PduOutletDriver(target, profile("apc"), 14).power_on()
    assert driver.power_state() is PowerState.ON  # one power supply fed keeps the machine up
    driver.power_on()
    assert [read(target, "apc", o) for o in (13, 14)] == [1, 1]


@pytest.mark.parametrize("prof, community", [("apc", "apc"), ("tripplite-ats", "tripplite")])
@pytest.mark.parametrize("action", ["power_state", "power_on", "power_off", "power_cycle", "ping"])
def test_an_outlet_the_pdu_does_not_have_is_named(snmpsim, prof, community, action):
    driver = PduOutletDriver(v2c(snmpsim, community), profile(prof), 17)
    with pytest.raises(OutletMissing) as caught:
        getattr(driver, action)()
    assert "outlet 17 does not exist on this PDU" in str(caught.value)
    assert not caught.value.retryable and isinstance(caught.value, BmcUnsupported)


def test_ping_reads_the_agent_and_the_outlet(snmpsim):
    assert 0 < PduOutletDriver(v3(snmpsim, "apc"), profile("apc"), 1).ping() < 2


@pytest.mark.parametrize(
    "change, words",
    [
        ({"auth_key": "not-the-auth-key"}, "authentication key"),
        ({"priv_key": "not-the-priv-key"}, "privacy key"),
        ({"user": "somebody"}, "does not know this SNMPv3 user"),
    ],
)
def test_wrong_v3_credentials_are_an_auth_error_at_once(snmpsim, change, words):
    target = v3(snmpsim, "apc", **change)
    started = time.monotonic()
    with pytest.raises(PduAuthError) as caught:
        PduOutletDriver(target, profile("apc"), 1).power_off()
    assert time.monotonic() - started < 1.5  # a report, not a timeout
    assert words in str(caught.value)
    assert isinstance(caught.value, BmcAuthError) and not caught.value.retryable
    for secret in (snmpsim.V3_AUTH_KEY, snmpsim.V3_PRIV_KEY, *change.values()):
        assert secret not in str(caught.value) and secret not in repr(caught.value)
    assert read(v2c(snmpsim, "apc"), "apc", 1) == 1  # nothing was switched
    # The same user with the right keys works at once afterwards: the rejected keys are not kept.
    assert PduOutletDriver(v3(snmpsim, "apc"), profile("apc"), 1).power_state() is PowerState.ON


def test_a_wrong_community_is_a_timeout_that_says_so(snmpsim):
    # SNMP v2c agents drop a request with an unknown community without a word.
    community = "not-the-community"
    with pytest.raises(PduTimeout) as caught:
        PduOutletDriver(v2c(snmpsim, community, timeout_s=0.6), profile("apc"), 1).power_state()
    assert caught.value.retryable
    assert "community is wrong" in str(caught.value)
    assert community not in str(caught.value) and community not in repr(caught.value)


def test_a_forked_child_gets_a_loop_of_its_own(snmpsim):
    """An RQ worker forks a work horse per job: the child must not wait on the parent's loop thread."""
    target = v2c(snmpsim, "apc")
    PduOutletDriver(target, profile("apc"), 1).power_state()  # the parent's loop is running
    pid = os.fork()
    if pid == 0:
        try:
            ok = PduOutletDriver(target, profile("apc"), 1).power_state() is PowerState.ON
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_dead_port_times_out_within_the_deadline():
    target = PduTarget("127.0.0.1", free_udp_port(), community="public", timeout_s=0.8)
    started = time.monotonic()
    with pytest.raises(PduTimeout) as caught:
        PduOutletDriver(target, profile("apc"), 1).power_on()
    assert 0.7 < time.monotonic() - started < 2.5
    assert f"127.0.0.1:{target.port}" in str(caught.value) and "no answer within 0.8 s" in str(caught.value)


def test_boot_devices_are_not_a_pdus(snmpsim):
    driver = PduOutletDriver(v2c(snmpsim, "apc"), profile("apc"), 1)
    with pytest.raises(CapabilityMissing, match="only switch power"):
        driver.set_boot_device(BootDevice.PXE)
    with pytest.raises(BmcUnsupported, match="cannot ask the operating system"):
        driver.power_off(soft=True)
    assert read(v2c(snmpsim, "apc"), "apc", 1) == 1


def test_the_target_keeps_its_secrets_out_of_repr(snmpsim):
    target = v3(snmpsim, "apc")
    shown = repr(PduOutletDriver(target, profile("apc"), 1)) + repr(target)
    assert snmpsim.V3_AUTH_KEY not in shown and snmpsim.V3_PRIV_KEY not in shown
    assert "community=" not in repr(v2c(snmpsim, "apc"))
