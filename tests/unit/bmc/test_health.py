"""The health values and the fake driver's sensors and event log (what the demo shows)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from provisioner.bmc import BmcTarget, BmcUnreachable, PowerState, get_driver
from provisioner.bmc.fake import FAULT_UNREACHABLE, fake_bmc, reset_fakes
from provisioner.bmc.health import Health, LogEntry, SensorKind, SensorReading, threshold_health, worst


@pytest.fixture(autouse=True)
def _fresh():
    reset_fakes()
    yield
    reset_fakes()


def target():
    return BmcTarget("10.9.8.1", 623, "admin", "pw", timeout_s=1.0)


def test_values_survive_a_round_trip_through_json():
    reading = SensorReading("CPU1 Temp", SensorKind.TEMPERATURE, 97.0, "°C", Health.CRITICAL, upper_critical=95.0)
    assert SensorReading.from_dict(reading.as_dict()) == reading
    entry = LogEntry("7", datetime(2026, 3, 1, tzinfo=UTC), Health.WARNING, "Upper non-critical", "CPU1 Temp")
    assert LogEntry.from_dict(entry.as_dict()) == entry
    assert LogEntry.from_dict(LogEntry("8", None, Health.OK, "x").as_dict()).at is None


def test_threshold_health_and_worst():
    kw = {"lower_critical": 5, "lower_non_critical": 10, "upper_non_critical": 85, "upper_critical": 95}
    assert threshold_health(50, **kw) == Health.OK
    assert threshold_health(86, **kw) == Health.WARNING
    assert threshold_health(95, **kw) == Health.CRITICAL
    assert threshold_health(4, **kw) == Health.CRITICAL
    assert threshold_health(None, **kw) == Health.UNKNOWN
    assert worst([Health.OK, Health.WARNING, Health.UNKNOWN]) == Health.WARNING
    assert worst([]) == Health.OK


def test_fake_sensors_read_only_standby_sensors_while_off():
    driver = get_driver("fake", target())
    off = {r.name: r for r in driver.sensors()}
    assert off["Inlet Temp"].value == 23.0 and off["CPU1 Temp"].value is None
    assert off["CPU1 Temp"].health == Health.UNKNOWN
    driver.power_on()
    on = {r.name: r for r in driver.sensors()}
    assert on["CPU1 Temp"].value == 48.0 and on["CPU1 Temp"].health == Health.OK
    assert on["CPU1 Temp"].upper_critical == 95


def test_fake_event_log_clears_and_logs_the_clearing():
    driver = get_driver("fake", target())
    bmc = fake_bmc("10.9.8.1", 623)
    before = len(driver.events())
    entry = bmc.log_event("Upper critical going high", Health.CRITICAL, "CPU1 Temp")
    assert driver.events()[-1] == entry and int(entry.id) == before + 1
    assert driver.clear_events() == before + 1
    assert [e.message for e in driver.events()] == ["Event log cleared"]


def test_fake_faults_apply_to_health_calls():
    fake_bmc("10.9.8.1", 623).fault = FAULT_UNREACHABLE
    with pytest.raises(BmcUnreachable):
        get_driver("fake", target()).sensors()
    assert fake_bmc("10.9.8.1", 623).power == PowerState.OFF
