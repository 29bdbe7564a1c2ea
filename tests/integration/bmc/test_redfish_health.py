"""Sensors and the event log over Redfish, against sushy-tools' emulator.

The emulator serves each chassis's Thermal resource (temperatures with thresholds, fans) and no Power resource,
Sensors collection or log service; the SEL tests use the LogService the harness adds to it (conftest.py,
_EMULATOR_LOG_SERVICE), shaped as iDRAC and OpenBMC serve theirs.
"""

from __future__ import annotations

import pytest

from provisioner.bmc import BmcAuthError, get_driver
from provisioner.bmc.health import Health, SensorKind

from .conftest import REDFISH_PASSWORD

ENTRIES = [
    # Newest first, as iDRAC lists them.
    {"@odata.id": "/redfish/v1/Systems/x/LogServices/SEL/Entries/2", "Id": "2", "EntryType": "SEL",
     "Created": "2026-12-01T10:00:00+00:00", "Severity": "Critical", "Message": "CPU 1 machine check error",
     "SensorType": "Processor", "SensorNumber": 3},
    {"@odata.id": "/redfish/v1/Systems/x/LogServices/SEL/Entries/1", "Id": "1", "EntryType": "SEL",
     "Created": "2026-11-01T09:30:00+00:00", "Severity": "OK", "Message": "Log area reset/cleared"},
]  # fmt: skip


@pytest.fixture
def emulator(redfish_emulator):
    redfish_emulator.set_sel([])
    yield redfish_emulator
    redfish_emulator.set_sel([])


def test_thermal_sensors_with_their_thresholds(emulator):
    readings = {r.name: r for r in get_driver("redfish", emulator.target()).sensors()}
    intake = readings["Chassis Intake Temp"]
    assert (intake.kind, intake.value, intake.unit, intake.health) == (SensorKind.TEMPERATURE, 25, "°C", Health.OK)
    assert (intake.lower_critical, intake.lower_non_critical, intake.upper_non_critical, intake.upper_critical) == (
        5, 10, 30, 40,
    )  # fmt: skip
    cpu = readings["CPU Temp"]
    assert (cpu.value, cpu.upper_non_critical, cpu.upper_critical, cpu.lower_critical) == (41, 42, 45, None)
    fan = readings["BaseBoard System Fan"]
    assert (fan.kind, fan.value, fan.unit, fan.lower_critical) == (SensorKind.FAN, 2100, "RPM", 0)


def test_the_sel_is_read_oldest_first_and_cleared_with_clearlog(emulator):
    driver = get_driver("redfish", emulator.target())
    assert driver.events() == []
    assert driver.clear_events() == 0
    emulator.set_sel(ENTRIES)
    entries = driver.events()
    assert [(e.id, e.severity, e.sensor) for e in entries] == [
        ("1", Health.OK, ""),
        ("2", Health.CRITICAL, "Processor #3"),
    ]
    assert entries[1].message == "CPU 1 machine check error"
    assert entries[1].at.isoformat() == "2026-12-01T10:00:00+00:00"
    assert driver.clear_events() == 2
    assert emulator.sel_entries == []  # what the BMC holds, not what the driver says
    assert driver.events() == []


def test_a_wrong_password_is_an_auth_error_without_the_password(emulator):
    with pytest.raises(BmcAuthError) as failure:
        get_driver("redfish", emulator.target(password="not-" + REDFISH_PASSWORD)).sensors()
    assert REDFISH_PASSWORD not in str(failure.value)
