"""The BMC password never shows: not in reprs, not in error text, not in any log line at any level."""

from __future__ import annotations

import logging

import pytest

from provisioner.bmc import BmcError, BmcTarget, get_driver
from provisioner.bmc.guard import GuardedDriver

from .conftest import IPMI_USER, free_port

SECRET = "Top-Secret-pw-9931"


@pytest.fixture
def all_logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_hidden(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


def test_ipmi_wrong_password_and_timeout(all_logs, loopback_bmc):
    bmc = loopback_bmc(password="the-right-one")
    rejected = BmcTarget(bmc.address, bmc.port, IPMI_USER, SECRET, timeout_s=1)
    silent = BmcTarget("127.0.0.1", free_port(), IPMI_USER, SECRET, timeout_s=0.2)
    errors = []
    for target in (rejected, silent):
        driver = get_driver("ipmi", target)
        with pytest.raises(BmcError) as caught:
            driver.power_state()
        errors.append(caught.value)
        assert_hidden(repr(target), str(target), repr(driver))
    assert [type(e).__name__ for e in errors] == ["BmcAuthError", "BmcTimeout"]
    assert_hidden(*(str(e) for e in errors), *(repr(e) for e in errors), *(e.detail for e in errors))
    assert_hidden(all_logs.text)


def test_ipmi_success_logs_nothing_secret(all_logs, loopback_bmc):
    bmc = loopback_bmc(password=SECRET)
    driver = get_driver("ipmi", BmcTarget(bmc.address, bmc.port, IPMI_USER, SECRET))
    driver.set_boot_device("pxe")
    driver.power_on()
    assert bmc.powered_on
    assert_hidden(all_logs.text)


def test_redfish_wrong_password_and_success(all_logs, redfish_emulator):
    wrong = BmcTarget("127.0.0.1", redfish_emulator.port, "redfish", SECRET, timeout_s=3)
    with pytest.raises(BmcError) as caught:
        get_driver("redfish", wrong).power_state()
    assert type(caught.value).__name__ == "BmcAuthError"
    assert_hidden(str(caught.value), repr(caught.value))
    # sushy logs every request at debug level; the basic-auth header must not be among them.
    get_driver("redfish", redfish_emulator.target()).power_state()
    assert "GET" in all_logs.text or "HTTP" in all_logs.text  # we did capture sushy's request logs
    assert_hidden(all_logs.text)


def test_fake_and_guard(all_logs, redis_client, redis_prefix):
    from provisioner.bmc.fake import fake_bmc, reset_fakes

    reset_fakes()
    fake_bmc("10.7.7.7", 623).password = "other"
    target = BmcTarget("10.7.7.7", 623, "admin", SECRET)
    guarded = GuardedDriver(get_driver("fake", target), redis_client, min_interval_s=0, key_prefix=redis_prefix)
    with pytest.raises(BmcError) as caught:
        guarded.power_on()
    assert_hidden(str(caught.value), repr(guarded), all_logs.text)
    for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
        assert_hidden(key.decode(), str(redis_client.get(key)))
    reset_fakes()
