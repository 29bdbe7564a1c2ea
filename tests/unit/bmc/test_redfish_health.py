"""How Redfish's Power resource, Sensors collection and log entries become readings and entries. sushy-tools'
emulator serves none of these (only Thermal, tested against it), so their JSON here follows the DMTF schemas and
the public mockups (Power.v1_x, Sensor.v1_x, LogEntry.v1_x)."""

from __future__ import annotations

from provisioner.bmc import redfish_health
from provisioner.bmc.health import Health, SensorKind


def test_power_voltages_and_consumption():
    readings = redfish_health._power(
        {
            "Voltages": [
                {"MemberId": "0", "Name": "VRM1 Voltage", "ReadingVolts": 1.21, "LowerThresholdCritical": 1.1,
                 "UpperThresholdCritical": 1.4, "Status": {"State": "Enabled", "Health": "OK"}},
                {"MemberId": "1", "Name": "12V", "ReadingVolts": None, "Status": {"State": "Absent"}},
            ],
            "PowerControl": [{"MemberId": "0", "Name": "System Power Control", "PowerConsumedWatts": 344}],
        }
    )  # fmt: skip
    vrm, absent, watts = readings
    assert (vrm.kind, vrm.value, vrm.unit, vrm.health, vrm.lower_critical, vrm.upper_critical) == (
        SensorKind.VOLTAGE, 1.21, "V", Health.OK, 1.1, 1.4,
    )  # fmt: skip
    assert (absent.value, absent.health) == (None, Health.UNKNOWN)
    # No status and no thresholds: a reading with nothing to judge it by is OK.
    assert (watts.kind, watts.value, watts.unit, watts.health) == (SensorKind.POWER, 344, "W", Health.OK)


def test_sensors_collection_members_with_thresholds():
    hot = redfish_health._sensors_collection(
        {
            "Id": "CPU1Temp", "Name": "CPU1 Temp", "ReadingType": "Temperature", "Reading": 91,
            "ReadingUnits": "Cel",
            "Thresholds": {"UpperCaution": {"Reading": 85}, "UpperCritical": {"Reading": 95},
                           "LowerCritical": {"Reading": 5}},
            "Status": {"State": "Enabled"},
        }
    )  # fmt: skip
    assert (hot.kind, hot.value, hot.unit) == (SensorKind.TEMPERATURE, 91, "°C")
    assert (hot.upper_non_critical, hot.upper_critical, hot.lower_critical) == (85, 95, 5)
    assert hot.health == Health.WARNING  # no Health from the BMC: judged by the thresholds
    other = redfish_health._sensors_collection(
        {"Id": "Hum", "Name": "Humidity", "ReadingType": "Humidity", "Reading": 40, "ReadingUnits": "%",
         "Status": {"State": "Enabled", "Health": "Critical"}}
    )  # fmt: skip
    assert (other.kind, other.unit, other.health) == (SensorKind.OTHER, "%", Health.CRITICAL)


def test_log_entries_with_or_without_a_usable_time():
    entry = redfish_health._entry(
        {"Id": "17", "Created": "2026-10-02T08:15:00+02:00", "Severity": "Warning",
         "Message": "Fan 3 RPM below lower non-critical threshold", "SensorType": "Fan", "SensorNumber": 51}
    )  # fmt: skip
    assert (entry.id, entry.severity, entry.sensor) == ("17", Health.WARNING, "Fan #51")
    assert entry.at.isoformat() == "2026-10-02T08:15:00+02:00"
    odd = redfish_health._entry({"Id": "18", "Created": "not a time", "Severity": "Unknown", "Name": "OEM event"})
    assert (odd.at, odd.severity, odd.message) == (None, Health.UNKNOWN, "OEM event")
    ordered = sorted([entry, odd, redfish_health._entry({"Id": "2", "Created": "2026-01-01T00:00:00Z"})],
                     key=redfish_health._sort_key)  # fmt: skip
    assert [e.id for e in ordered] == ["2", "17", "18"]  # by time; entries without one last
