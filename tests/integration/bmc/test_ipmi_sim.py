"""The IPMI driver against OpenIPMI's ipmi_sim, cross-checked with ipmitool and the simulator's own state.

ipmi_sim drops the EFI and persistent boot bits and never sets the boot-flags "valid" bit, so reading the boot
device back from it always says "default"; the device it was told is checked in its chassis files instead.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from provisioner.bmc import (
    BmcAuthError,
    BmcTarget,
    BmcTimeout,
    BmcUnreachable,
    BootDevice,
    PowerState,
    get_driver,
)

from .conftest import free_port, ipmitool


def test_power_state_reads_the_simulated_chassis(ipmi_sim):
    driver = get_driver("ipmi", ipmi_sim.target())
    assert driver.power_state() == PowerState.OFF
    ipmi_sim.set_power(True)
    assert driver.power_state() == PowerState.ON
    assert "Chassis Power is on" in ipmitool(ipmi_sim.port, "chassis", "power", "status")


def test_power_on_and_off_change_the_chassis_as_ipmitool_sees_it(ipmi_sim):
    driver = get_driver("ipmi", ipmi_sim.target())
    driver.power_on()
    assert ipmi_sim.power == "1"
    assert "Chassis Power is on" in ipmitool(ipmi_sim.port, "chassis", "power", "status")
    driver.power_on()  # already on: success, and still on
    assert ipmi_sim.power == "1"
    driver.power_off()
    assert ipmi_sim.power == "0"
    assert "Chassis Power is off" in ipmitool(ipmi_sim.port, "chassis", "power", "status")
    assert driver.power_state() == PowerState.OFF


def test_soft_power_off_asks_the_chassis_to_shut_down(ipmi_sim):
    ipmi_sim.set_power(True)
    driver = get_driver("ipmi", ipmi_sim.target())
    driver.power_off(soft=True)
    # ipmi_sim passes ACPI soft-off to its chassis script as "shutdown"; it has no OS to obey it.
    assert "shutdown=1" in ipmi_sim.events


def test_power_cycle_powers_on_when_off_and_resets_when_on(ipmi_sim):
    driver = get_driver("ipmi", ipmi_sim.target())
    driver.power_cycle()
    assert ipmi_sim.power == "1"
    assert ipmi_sim.events == ["power=1"]
    driver.power_cycle()
    assert ipmi_sim.events == ["power=1", "reset=1"]
    assert ipmi_sim.power == "1"


def test_set_boot_device_reaches_the_chassis(ipmi_sim):
    driver = get_driver("ipmi", ipmi_sim.target())
    driver.set_boot_device(BootDevice.PXE, once=True)
    assert ipmi_sim.boot == "pxe"
    assert "Force PXE" in ipmitool(ipmi_sim.port, "chassis", "bootparam", "get", "5")
    driver.set_boot_device(BootDevice.DISK, once=False, uefi=True)
    assert ipmi_sim.boot == "default"
    assert "Force Boot from default Hard-Drive" in ipmitool(ipmi_sim.port, "chassis", "bootparam", "get", "5")


def test_boot_from_cd_reaches_the_chassis(ipmi_sim):
    driver = get_driver("ipmi", ipmi_sim.target())
    driver.set_boot_device(BootDevice.CD, once=True, uefi=True)
    out = ipmitool(ipmi_sim.port, "chassis", "bootparam", "get", "5")
    # The selector is what matters; the simulator keeps no flags byte (valid, persistent, EFI) of its own.
    assert "Boot Device Selector : Force Boot from CD/DVD" in out


def test_get_boot_device_reads_what_ipmitool_set(ipmi_sim):
    driver = get_driver("ipmi", ipmi_sim.target())
    ipmitool(ipmi_sim.port, "chassis", "bootdev", "pxe")
    assert ipmi_sim.boot == "pxe"
    # The simulator never marks the flags valid, so no override is in force as far as IPMI is concerned.
    assert driver.get_boot_device() == BootDevice.DEFAULT


def test_ping_returns_the_round_trip_in_seconds(ipmi_sim):
    driver = get_driver("ipmi", ipmi_sim.target())
    first = driver.ping()  # includes the RMCP+ login
    again = driver.ping()  # reuses the session
    assert 0 < first < 1
    assert 0 < again < 0.1


def test_wrong_password_fails_fast_as_auth_error_and_is_not_retried(ipmi_sim):
    driver = get_driver("ipmi", ipmi_sim.target(password="not-the-password", timeout_s=5))
    started = time.monotonic()
    with pytest.raises(BmcAuthError) as caught:
        driver.power_state()
    assert time.monotonic() - started < 0.5
    assert caught.value.retryable is False
    assert f"127.0.0.1:{ipmi_sim.port}" in str(caught.value)
    assert "not-the-password" not in str(caught.value)
    # The good account still works: one bad login did not wedge the simulator.
    assert get_driver("ipmi", ipmi_sim.target()).power_state() == PowerState.OFF


def test_nothing_listening_is_unreachable_within_the_timeout():
    port = free_port()
    driver = get_driver("ipmi", BmcTarget("127.0.0.1", port, "admin", "x", timeout_s=0.4))
    started = time.monotonic()
    with pytest.raises(BmcUnreachable) as caught:
        driver.power_state()
    elapsed = time.monotonic() - started
    assert 0.35 < elapsed < 0.6
    assert isinstance(caught.value, BmcTimeout)
    assert caught.value.retryable is True
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_simulator_killed_mid_sequence_times_out_then_recovers(ipmi_sim_factory):
    sim = ipmi_sim_factory()
    driver = get_driver("ipmi", sim.target(timeout_s=0.5))
    driver.power_on()
    assert driver.power_state() == PowerState.ON
    sim.kill()
    started = time.monotonic()
    with pytest.raises(BmcUnreachable):
        driver.power_off()
    assert time.monotonic() - started < 0.8
    assert sim.power == "1"  # the power-off never reached the chassis
    # The BMC comes back (same port, same chassis files): the next call logs in afresh and works.
    sim.start()
    driver.power_off()
    assert sim.power == "0"
    assert driver.power_state() == PowerState.OFF


def test_several_simulators_at_once(ipmi_sim_factory):
    sims = [ipmi_sim_factory() for _ in range(5)]
    for index, sim in enumerate(sims):
        sim.set_power(index % 2 == 0)
    drivers = [get_driver("ipmi", sim.target()) for sim in sims]
    with ThreadPoolExecutor(len(drivers)) as pool:
        states = list(pool.map(lambda d: d.power_state(), drivers))
        assert states == [PowerState.ON, PowerState.OFF, PowerState.ON, PowerState.OFF, PowerState.ON]
        list(pool.map(lambda d: d.power_cycle(), drivers))
    assert [sim.power for sim in sims] == ["1"] * 5
    assert [sim.events[-1] for sim in sims] == ["reset=1", "power=1", "reset=1", "power=1", "reset=1"]
