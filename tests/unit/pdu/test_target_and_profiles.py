"""PDU targets refuse what cannot work before any packet is sent, and never show their secrets; vendor
profiles put the outlet where the MIB has it."""

from __future__ import annotations

import pytest

from provisioner.bmc import PowerState
from provisioner.bmc.errors import BmcAuthError, BmcTimeout, BmcUnsupported
from provisioner.pdu import OutletMissing, PduAuthError, PduTarget, PduTimeout, profile
from provisioner.pdu.driver import PduOutletDriver


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"address": ""}, "PDU address is empty"),
        ({"port": 0}, "not a port number"),
        ({"community": ""}, "SNMP v2c needs a community"),
        ({"version": "v3", "user": ""}, "SNMPv3 needs a user name"),
        ({"version": "v3", "user": "ops", "auth_key": "short"}, "authentication key needs at least 8"),
        ({"version": "v3", "user": "ops", "auth_key": "long-enough", "priv_key": "x"}, "privacy key needs"),
        ({"version": "v4"}, "'v4' is not a valid SnmpVersion"),
    ],
)
def test_a_target_that_cannot_work_is_refused_in_words(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PduTarget(**{"address": "10.0.0.9", "community": "c0mm-Secret", **kwargs})


def test_v3_without_privacy_needs_no_privacy_key():
    target = PduTarget("10.0.0.9", version="v3", user="ops", auth_key="auth-Secret-1", priv_protocol="none")
    assert target.endpoint == "10.0.0.9:161"


def test_secrets_stay_out_of_repr():
    target = PduTarget(
        "fd00::9", version="v3", user="ops", auth_key="auth-Secret-1", priv_key="priv-Secret-1", community="c-Secret"
    )
    shown = repr(target) + repr(PduOutletDriver(target, profile("apc"), (3, 4)))
    assert "Secret" not in shown
    assert target.endpoint == "[fd00::9]:161"


def test_errors_keep_the_bmc_taxonomy_and_name_the_pdu():
    timeout = PduTimeout("10.0.0.9:161", "no answer within 3 s")
    assert isinstance(timeout, BmcTimeout) and timeout.retryable and str(timeout).startswith("PDU 10.0.0.9:161: ")
    auth = PduAuthError("10.0.0.9:161", "wrong digest")
    assert isinstance(auth, BmcAuthError) and not auth.retryable and auth.reason == "PduAuthError"
    missing = OutletMissing("10.0.0.9:161", "outlet 30 does not exist on this PDU")
    assert isinstance(missing, BmcUnsupported) and not missing.retryable


def test_profiles_index_outlets_as_their_mibs_do():
    assert profile("apc").command_oid_of(7) == "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.7"
    assert profile("apc").state_oid_of(7) == profile("apc").command_oid_of(7)
    assert profile("tripplite-ats").state_oid_of(7) == "1.3.6.1.4.1.850.1.1.3.4.3.3.1.1.4.1.7"
    assert profile("tripplite-ats").command_oid_of(7) == "1.3.6.1.4.1.850.1.1.3.4.3.3.1.1.6.1.7"
    assert profile("tripplite-ats").states_for(PowerState.ON) == {2}
    with pytest.raises(ValueError, match="unknown PDU profile 'acme'; known profiles: apc, apc-masterswitch"):
        profile("acme")


@pytest.mark.parametrize("outlets", [(), (0,), (1, 1), (1, 2, 3, 4, 5)])
def test_outlet_numbers_are_checked(outlets):
    target = PduTarget("10.0.0.9", community="c")
    with pytest.raises(ValueError):
        PduOutletDriver(target, profile("apc"), outlets)
