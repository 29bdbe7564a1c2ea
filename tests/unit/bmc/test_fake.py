"""The fake driver: what the demo and the fast service tests rely on."""

from __future__ import annotations

import time

import pytest

from provisioner.bmc import BmcAuthError, BmcTarget, BmcTimeout, BmcUnreachable, BootDevice, PowerState, get_driver
from provisioner.bmc.fake import fake_bmc


def target(port=623, password="pw", timeout_s=1.0):
    return BmcTarget("10.9.8.7", port, "admin", password, timeout_s=timeout_s)


def test_state_is_shared_per_address_and_port():
    get_driver("fake", target()).power_on()
    assert get_driver("fake", target()).power_state() == PowerState.ON
    assert get_driver("fake", target(port=624)).power_state() == PowerState.OFF


def test_power_on_twice_boots_once_and_uses_up_a_one_time_device():
    driver = get_driver("fake", target())
    driver.set_boot_device(BootDevice.PXE, once=True)
    driver.power_on()
    driver.power_on()
    bmc = fake_bmc("10.9.8.7", 623)
    assert bmc.boots == [BootDevice.PXE]
    assert driver.get_boot_device() == BootDevice.DEFAULT


def test_power_cycle_reboots_from_a_persistent_device():
    driver = get_driver("fake", target())
    driver.set_boot_device(BootDevice.DISK, once=False, uefi=True)
    seen = []
    fake_bmc("10.9.8.7", 623).on_power_on.append(seen.append)
    driver.power_cycle()
    driver.power_cycle()
    assert seen == [BootDevice.DISK, BootDevice.DISK]
    assert fake_bmc("10.9.8.7", 623).boot_uefi is True
    driver.power_off(soft=True)
    assert driver.power_state() == PowerState.OFF
    assert fake_bmc("10.9.8.7", 623).calls[-2:] == ["power_off_soft", "power_state"]


def test_delay_is_applied():
    fake_bmc("10.9.8.7", 623).delay_s = 0.05
    started = time.monotonic()
    assert get_driver("fake", target()).ping() >= 0.05
    assert time.monotonic() - started >= 0.05


def test_delay_past_the_timeout_is_a_timeout():
    fake_bmc("10.9.8.7", 623).delay_s = 10
    started = time.monotonic()
    with pytest.raises(BmcTimeout):
        get_driver("fake", target(timeout_s=0.05)).power_state()
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(("fault", "error"), [("unreachable", BmcUnreachable), ("auth", BmcAuthError)])
def test_fault_injection(fault, error):
    fake_bmc("10.9.8.7", 623).fault = fault
    with pytest.raises(error) as caught:
        get_driver("fake", target()).power_on()
    assert "10.9.8.7:623" in str(caught.value)
    assert fake_bmc("10.9.8.7", 623).power == PowerState.OFF


def test_a_configured_password_rejects_others():
    fake_bmc("10.9.8.7", 623).password = "right"
    with pytest.raises(BmcAuthError) as caught:
        get_driver("fake", target(password="wrong-one")).power_state()
    assert "wrong-one" not in str(caught.value)
    assert get_driver("fake", target(password="right")).power_state() == PowerState.OFF
