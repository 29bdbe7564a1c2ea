"""Sensors and the system event log over IPMI, against ipmi_sim with sensors defined in its command file and
cross-checked with ipmitool.

The simulator's CPU temperature is polled from a file, so a test heats the CPU by writing that file; ipmi_sim
then logs the threshold crossings in its SEL itself, as a BMC does. Its clock is not set, so its entries carry
"pre-init" times (seconds since start), which the driver reports as no time at all.
"""

from __future__ import annotations

import time

import pytest

from provisioner.bmc import get_driver, ipmi_health
from provisioner.bmc.health import Health, SensorKind

from .conftest import full_sensor_sdr, ipmitool

# Every threshold event bit a sensor here supports and enables: LNC and LC going low, UNC and UC going high.
EVENTS = "000001010000101"


def sensors_emu(cpu_file) -> str:
    def events(number: int) -> str:
        return f"sensor_set_event_support 0x20 0 {number} enable scanning per-state {EVENTS} {EVENTS} {EVENTS} {EVENTS}"

    return "\n".join(
        [
            "sel_enable 0x20 1000 0x0a",
            # CPU1 Temp: raw = °C; thresholds (UNR UC UNC LNR LC LNC) 95 upper critical, 85 upper non-critical.
            f'sensor_add 0x20 0 1 0x01 0x01 poll 50 file "{cpu_file}"',
            "sensor_set_threshold 0x20 0 1 settable 011011 0 95 85 0 5 10",
            events(1),
            full_sensor_sdr(1, "CPU1 Temp", 0x01, 1),
            # Fan1 RPM: 50 RPM a step; lower critical 600, lower non-critical 850.
            "sensor_add 0x20 0 2 0x04 0x01",
            "sensor_set_threshold 0x20 0 2 settable 000011 0 0 0 0 12 17",
            events(2),
            "sensor_set_value 0x20 0 2 120 0",
            full_sensor_sdr(2, "Fan1 RPM", 0x04, 18, m=50, entity=0x1D),
            # 12V: 0.06 V a step.
            "sensor_add 0x20 0 3 0x02 0x01",
            "sensor_set_threshold 0x20 0 3 settable 011011 0 220 210 0 180 190",
            events(3),
            "sensor_set_value 0x20 0 3 202 0",
            full_sensor_sdr(3, "12V", 0x02, 4, m=6, r_exp=-2),
        ]
    )


@pytest.fixture
def sensor_sim(ipmi_sim_factory, tmp_path):
    cpu = tmp_path / "cpu-temp"
    cpu.write_text("48\n")
    sim = ipmi_sim_factory(emu=sensors_emu(cpu))
    sim.cpu_file = cpu
    ipmi_health.forget_sdr()
    _wait_for(lambda: ": 48 (" in ipmitool(sim.port, "sensor", "get", "CPU1 Temp"))
    return sim


def _wait_for(condition, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the simulator did not get there in time"
        time.sleep(0.05)


def test_sensors_read_values_units_and_thresholds_as_ipmitool_does(sensor_sim):
    readings = {r.name: r for r in get_driver("ipmi", sensor_sim.target()).sensors()}
    assert list(readings) == ["CPU1 Temp", "Fan1 RPM", "12V"]
    cpu, fan, volts = readings["CPU1 Temp"], readings["Fan1 RPM"], readings["12V"]
    assert (cpu.kind, cpu.value, cpu.unit, cpu.health) == (SensorKind.TEMPERATURE, 48.0, "°C", Health.OK)
    assert (cpu.lower_critical, cpu.lower_non_critical, cpu.upper_non_critical, cpu.upper_critical) == (5, 10, 85, 95)
    assert (fan.kind, fan.value, fan.unit, fan.lower_critical, fan.lower_non_critical) == (
        SensorKind.FAN, 6000.0, "RPM", 600.0, 850.0,
    )  # fmt: skip
    assert fan.upper_critical is None and fan.upper_non_critical is None
    assert (volts.kind, volts.value, volts.unit) == (SensorKind.VOLTAGE, 12.12, "V")
    assert (volts.lower_critical, volts.upper_critical) == (10.8, 13.2)
    # ipmitool's thresholds: name | value | unit | status | lnr | lcr | lnc | unc | ucr | unr
    line = next(x for x in ipmitool(sensor_sim.port, "sensor", "list").splitlines() if x.startswith("12V"))
    fields = [f.strip() for f in line.split("|")]
    assert float(fields[1]) == volts.value
    assert (float(fields[5]), float(fields[6]), float(fields[7]), float(fields[8])) == (10.8, 11.4, 12.6, 13.2)


def test_a_hot_cpu_reads_critical_and_the_bmc_logs_it(sensor_sim):
    driver = get_driver("ipmi", sensor_sim.target())
    assert driver.events() == []
    sensor_sim.cpu_file.write_text("97\n")
    _wait_for(lambda: "Upper Critical" in ipmitool(sensor_sim.port, "sel", "list"))
    cpu = next(r for r in driver.sensors() if r.name == "CPU1 Temp")
    assert (cpu.value, cpu.health) == (97.0, Health.CRITICAL)
    entries = driver.events()
    assert [(e.severity, e.sensor) for e in entries] == [
        (Health.WARNING, "CPU1 Temp"),
        (Health.CRITICAL, "CPU1 Temp"),
    ]
    assert entries[1].message == "Upper critical, reading 97 °C, threshold 95 °C"
    assert entries[1].at is None  # the simulator's clock was never set: a pre-init time is no date
    assert [e.id for e in entries] == ["1", "2"]


def test_clear_events_empties_the_sel_as_ipmitool_sees_it(sensor_sim):
    driver = get_driver("ipmi", sensor_sim.target())
    sensor_sim.cpu_file.write_text("90\n")
    _wait_for(lambda: "Upper Non-critical" in ipmitool(sensor_sim.port, "sel", "list"))
    assert driver.clear_events() == 1
    assert ipmitool(sensor_sim.port, "sel", "list").strip() == ""
    assert driver.events() == []
    assert driver.clear_events() == 0  # nothing to clear: nothing sent


def test_the_sdr_is_read_once_and_read_again_when_the_repository_changes(sensor_sim):
    driver = get_driver("ipmi", sensor_sim.target())
    driver.sensors()
    stamp, records = ipmi_health._sdr_cache[sensor_sim.target().endpoint]
    driver.sensors()
    assert ipmi_health._sdr_cache[sensor_sim.target().endpoint][1] is records  # not fetched again
    # A different repository (here: as if another BMC took the address) has another stamp: read afresh.
    ipmi_health._sdr_cache[sensor_sim.target().endpoint] = (b"stale", [])
    assert len(driver.sensors()) == 3


def test_a_bmc_without_sensors_or_sel_answers_with_none(ipmi_sim):
    driver = get_driver("ipmi", ipmi_sim.target())
    ipmi_health.forget_sdr()
    assert driver.sensors() == []
    assert driver.events() == []
    assert driver.clear_events() == 0  # nothing to clear: no command sent


def test_the_lab_bmc_serves_sensors_that_follow_power_and_a_sel_that_clears(loopback_bmc):
    """The demo's BMCs (provisioner/lab/bmc_health.py): a second IPMI peer, cross-checked with ipmitool."""
    bmc = loopback_bmc()
    driver = get_driver("ipmi", bmc.target())
    off = {r.name: r for r in driver.sensors()}
    assert off["Inlet Temp"].value == 22.0 and off["CPU1 Temp"].value is None
    assert off["CPU1 Temp"].health == Health.UNKNOWN and off["CPU1 Temp"].upper_critical == 95.0
    bmc.powered_on = True
    on = {r.name: r for r in driver.sensors()}
    assert (on["CPU1 Temp"].value, on["Fan1 RPM"].value, on["12V"].value) == (46.0, 6000.0, 12.12)
    # A discrete sensor (compact record): its asserted states, and their severity.
    assert (on["PSU1 Status"].value, on["PSU1 Status"].states, on["PSU1 Status"].health) == (None, ("Present",), "ok")
    bmc.health.sensors[8].states = 0x03  # present, and failed
    psu = next(r for r in driver.sensors() if r.name == "PSU1 Status")
    assert (psu.health, psu.states) == (Health.CRITICAL, ("Present", "Failure"))
    assert "CPU1 Temp        | 46.000" in ipmitool(bmc.port, "sensor", "list")
    entries = driver.events()
    assert [e.severity for e in entries] == [Health.OK, Health.OK, Health.WARNING, Health.OK]
    assert entries[2].sensor == "CPU2 Temp" and entries[2].at is not None
    assert (entries[1].sensor, entries[1].message) == ("PSU1 Status", "Present")
    bmc.health.add_event(0x01, 0x02, 0x01, (0x59, 97, 95))  # CPU1 upper critical going high
    assert driver.events()[-1].message == "Upper critical, reading 97 °C, threshold 95 °C"
    assert len(ipmitool(bmc.port, "sel", "list").splitlines()) == 5
    assert driver.clear_events() == 5
    assert bmc.health.sel == [] and ipmitool(bmc.port, "sel", "list").strip() in ("", "SEL has no entries")


def test_a_bmc_that_sends_records_only_in_pieces_is_read_in_pieces_under_a_reservation(loopback_bmc):
    bmc = loopback_bmc()
    bmc.health.max_sdr_read = 16  # refuses "the whole record" (FFh) with 0xCA, as many BMCs do
    ipmi_health.forget_sdr()
    readings = get_driver("ipmi", bmc.target()).sensors()
    assert [r.name for r in readings] == [
        "Inlet Temp", "CPU1 Temp", "CPU2 Temp", "Fan1 RPM", "Fan2 RPM", "12V", "PSU1 Input", "PSU1 Status",
    ]  # fmt: skip
    assert readings[-2].upper_critical == 255.0
    reserved = [c for c in bmc.commands if c[:2] == (0x0A, 0x22)]
    assert len(reserved) == 1  # one reservation served every piece of every record
