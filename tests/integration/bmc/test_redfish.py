"""The Redfish driver against sushy-tools' emulator (fake systems, HTTP basic auth) on 127.0.0.1.

The emulator really changes power and boot state, but applies a power change up to a second later (like a real
BMC), ignores a one-time boot override ("Once" reads back as continuous) and answers PowerCycle with 501.
"""

from __future__ import annotations

import time

import pytest

from provisioner.bmc import (
    BmcAuthError,
    BmcTarget,
    BmcUnreachable,
    BootDevice,
    PowerState,
    get_driver,
)

from .conftest import free_port


def wait_for_power(driver, wanted: PowerState, within_s: float = 3.0) -> PowerState:
    deadline = time.monotonic() + within_s
    state = driver.power_state()
    while state != wanted and time.monotonic() < deadline:
        time.sleep(0.05)
        state = driver.power_state()
    return state


def test_power_on_and_off(redfish_emulator):
    driver = get_driver("redfish", redfish_emulator.target())
    driver.power_off()
    assert wait_for_power(driver, PowerState.OFF) == PowerState.OFF
    driver.power_off()  # already off: success
    driver.power_on()
    assert wait_for_power(driver, PowerState.ON) == PowerState.ON
    driver.power_on()  # already on: success
    assert driver.power_state() == PowerState.ON


def test_power_cycle_when_on_falls_back_from_the_missing_power_cycle(redfish_emulator):
    driver = get_driver("redfish", redfish_emulator.target())
    driver.power_on()
    assert wait_for_power(driver, PowerState.ON) == PowerState.ON
    driver.power_cycle()
    # The emulator shows the reset as off, then on again.
    assert driver.power_state() == PowerState.OFF
    assert wait_for_power(driver, PowerState.ON) == PowerState.ON


def test_power_cycle_when_off_powers_on(redfish_emulator):
    driver = get_driver("redfish", redfish_emulator.target())
    driver.power_on()
    assert wait_for_power(driver, PowerState.ON) == PowerState.ON
    driver.power_off(soft=True)  # GracefulShutdown
    assert wait_for_power(driver, PowerState.OFF) == PowerState.OFF
    driver.power_cycle()
    assert wait_for_power(driver, PowerState.ON) == PowerState.ON


def test_boot_device_round_trip(redfish_emulator):
    driver = get_driver("redfish", redfish_emulator.target())
    driver.set_boot_device(BootDevice.PXE, once=True, uefi=True)
    assert driver.get_boot_device() == BootDevice.PXE
    driver.set_boot_device(BootDevice.DISK, once=False)
    assert driver.get_boot_device() == BootDevice.DISK


def test_ping(redfish_emulator):
    assert 0 < get_driver("redfish", redfish_emulator.target()).ping() < 1


def test_wrong_password_is_an_auth_error(redfish_emulator):
    driver = get_driver("redfish", redfish_emulator.target(password="not-it"))
    with pytest.raises(BmcAuthError) as caught:
        driver.power_state()
    assert not caught.value.retryable
    assert f"127.0.0.1:{redfish_emulator.port}" in str(caught.value)
    with pytest.raises(BmcAuthError):
        driver.ping()


def test_nothing_listening_is_unreachable_fast():
    driver = get_driver("redfish", BmcTarget("127.0.0.1", free_port(), "u", "p", timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(BmcUnreachable) as caught:
        driver.power_state()
    assert time.monotonic() - started < 0.6  # no sushy retries with sleeps in between
    assert caught.value.retryable
