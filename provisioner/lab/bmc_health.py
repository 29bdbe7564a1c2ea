"""Sensors and a system event log for the lab's loopback BMC, over real IPMI commands.

A small server's worth of threshold sensors (temperatures, fans, a voltage) in an SDR repository, readings that
follow the chassis power (a powered-off server reads only its standby sensors), thresholds, and a SEL that can
be read, added to and cleared. Enough for the demo's machine pages and for tests of the IPMI driver against a
second peer besides ipmi_sim.
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass

OK = 0x00
INVALID_COMMAND = 0xC1
NOT_PRESENT = 0xCB
INVALID_DATA = 0xCC
RESERVATION_CANCELLED = 0xC5
CANNOT_RETURN_BYTES = 0xCA

NETFN_SENSOR = 0x04
NETFN_STORAGE = 0x0A

UNIT_CELSIUS, UNIT_VOLTS, UNIT_RPM = 1, 4, 18
TYPE_TEMPERATURE, TYPE_VOLTAGE, TYPE_FAN, TYPE_POWER_SUPPLY = 0x01, 0x02, 0x04, 0x08


@dataclass
class LabSensor:
    """A threshold sensor: value = m * raw * 10^r_exp; raw thresholds (0 = none) LNC, LC, UNC, UC."""

    number: int
    name: str
    sensor_type: int
    unit: int
    on_raw: int  # reading while the chassis is on
    off_raw: int | None  # while off: None for no reading (no standby power)
    thresholds: tuple[int, int, int, int]
    m: int = 1
    r_exp: int = 0
    entity: int = 0x07

    def sdr(self, record_id: int) -> bytes:
        """Its full sensor record (IPMI 2.0 table 43-1)."""
        name = self.name.encode()
        readable = sum(1 << bit for bit, raw in zip((0, 1, 3, 4), self.thresholds, strict=True) if raw)
        body = bytes(
            [
                0x20, 0x00, self.number, self.entity, 0x01, 0x7F, 0x68, self.sensor_type, 0x01,
                0x85, 0x32, 0x85, 0x32, readable, 0x00,
                0x00, self.unit, 0x00, 0x00,
                self.m & 0xFF, (self.m >> 8 & 0x03) << 6, 0x00, 0x00, 0x00, (self.r_exp & 0x0F) << 4,
                0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00,
                0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0,
                0xC0 | len(name), *name,
            ]
        )  # fmt: skip
        return struct.pack("<HBBB", record_id, 0x51, 0x01, len(body)) + body


@dataclass
class LabDiscreteSensor:
    """A sensor-specific discrete sensor (event/reading type 6Fh): ``states`` is its asserted offsets, a bit each
    (for a power supply, bit 0 is "presence detected" and bit 1 "failure detected")."""

    number: int
    name: str
    sensor_type: int
    states: int
    entity: int = 0x0A

    def sdr(self, record_id: int) -> bytes:
        """Its compact sensor record (IPMI 2.0 table 43-2)."""
        name = self.name.encode()
        body = bytes(
            [
                0x20, 0x00, self.number, self.entity, 0x01, 0x7F, 0x40, self.sensor_type, 0x6F,
                0xFF, 0x7F, 0xFF, 0x7F, 0xFF, 0x7F,
                0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0xC0 | len(name), *name,
            ]
        )  # fmt: skip
        return struct.pack("<HBBB", record_id, 0x51, 0x02, len(body)) + body


DEMO_SENSORS = (
    LabSensor(1, "Inlet Temp", TYPE_TEMPERATURE, UNIT_CELSIUS, 23, 22, (3, 0, 42, 47)),
    LabSensor(2, "CPU1 Temp", TYPE_TEMPERATURE, UNIT_CELSIUS, 46, None, (0, 0, 85, 95)),
    LabSensor(3, "CPU2 Temp", TYPE_TEMPERATURE, UNIT_CELSIUS, 49, None, (0, 0, 85, 95)),
    LabSensor(4, "Fan1 RPM", TYPE_FAN, UNIT_RPM, 120, None, (17, 12, 0, 0), m=50, entity=0x1D),
    LabSensor(5, "Fan2 RPM", TYPE_FAN, UNIT_RPM, 118, None, (17, 12, 0, 0), m=50, entity=0x1D),
    LabSensor(6, "12V", TYPE_VOLTAGE, UNIT_VOLTS, 202, None, (190, 180, 210, 220), m=6, r_exp=-2),
    LabSensor(7, "PSU1 Input", TYPE_VOLTAGE, UNIT_VOLTS, 230, 230, (190, 180, 250, 255), entity=0x0A),
    LabDiscreteSensor(8, "PSU1 Status", TYPE_POWER_SUPPLY, 0x01),
)


def sel_record(
    record_id: int, stamp: int, sensor_type: int, sensor: int, direction: int, data: tuple[int, int, int]
) -> bytes:
    """A standard (type 02h) SEL record from the BMC (generator 20h), event message revision 04h."""
    return struct.pack("<HBIBBBBBBBBB", record_id, 0x02, stamp, 0x20, 0x00, 0x04, sensor_type, sensor, direction,
                       *data)  # fmt: skip


class LabHealth:
    """The SDR repository, sensor readings and SEL of one loopback BMC; ``handle`` answers their commands."""

    def __init__(self, sensors=DEMO_SENSORS, *, now: float | None = None):
        self.sensors = {s.number: s for s in sensors}
        self._sdr = [s.sdr(i + 1) for i, s in enumerate(sensors)]
        self._lock = threading.Lock()
        self._reservation = 0
        #: Like many BMCs' message buffers: Get SDR asking for more bytes than this is refused (0xCA), so the
        #: reader must read records in pieces under a reservation. None: whole records in one reply.
        self.max_sdr_read: int | None = None
        now = time.time() if now is None else now
        day = 86400
        # The log a machine that has run a while has: its power supply seen, a warm afternoon, the log's clear.
        self.sel: list[bytes] = []
        self.add_event(0x10, 0x00, 0x6F, (0x02, 0xFF, 0xFF), stamp=int(now - 30 * day))  # log area reset/cleared
        self.add_event(0x08, 0x08, 0x6F, (0x00, 0xFF, 0xFF), stamp=int(now - 30 * day + 60))  # PSU1 presence
        self.add_event(0x01, 0x03, 0x01, (0x57, 86, 85), stamp=int(now - 3 * day))  # CPU2 upper non-critical
        self.add_event(0x01, 0x03, 0x81, (0x57, 80, 85), stamp=int(now - 3 * day + 420))  # ... deasserted

    def add_event(
        self, sensor_type: int, sensor: int, direction: int, data: tuple[int, int, int], *, stamp: int | None = None
    ) -> int:
        """Log an event as the BMC would (``direction``: event/reading type, bit 7 for a deassertion)."""
        with self._lock:
            record_id = (struct.unpack_from("<H", self.sel[-1])[0] + 1) if self.sel else 1
            stamp = int(time.time()) if stamp is None else stamp
            self.sel.append(sel_record(record_id, stamp, sensor_type, sensor, direction, data))
            return record_id

    def handle(self, netfn: int, command: int, data, powered_on: bool) -> tuple[int, list[int]]:
        """(completion code, response data) for a sensor or storage command; INVALID_COMMAND for others."""
        data = bytes(data)
        with self._lock:
            if netfn == NETFN_STORAGE:
                return self._storage(command, data)
            if netfn == NETFN_SENSOR:
                return self._sensor(command, data, powered_on)
        return INVALID_COMMAND, []

    def _storage(self, command: int, data: bytes) -> tuple[int, list[int]]:
        if command == 0x20:  # Get SDR Repository Info
            return OK, [0x51, *struct.pack("<HH", len(self._sdr), 0xFFFF), 0, 0, 0, 0, 0, 0, 0, 0, 0x00]
        if command == 0x22:  # Reserve SDR Repository
            self._reservation = (self._reservation + 1) & 0xFFFF or 1
            return OK, list(struct.pack("<H", self._reservation))
        if command == 0x23 and len(data) >= 6:  # Get SDR
            reservation, record_id, offset, count = struct.unpack("<HHBB", data[:6])
            if self.max_sdr_read is not None and count > self.max_sdr_read:
                return CANNOT_RETURN_BYTES, []
            if offset and reservation != self._reservation:
                return RESERVATION_CANCELLED, []
            index = 0 if record_id == 0 else record_id - 1
            if not 0 <= index < len(self._sdr):
                return NOT_PRESENT, []
            next_id = index + 2 if index + 1 < len(self._sdr) else 0xFFFF
            record = self._sdr[index]
            chunk = record[offset:] if count == 0xFF else record[offset : offset + count]
            return OK, [*struct.pack("<H", next_id), *chunk]
        if command == 0x40:  # Get SEL Info
            return OK, [0x51, *struct.pack("<HH", len(self.sel), 0xFFFF), 0, 0, 0, 0, 0, 0, 0, 0, 0x0A]
        if command == 0x42:  # Reserve SEL
            self._reservation = (self._reservation + 1) & 0xFFFF or 1
            return OK, list(struct.pack("<H", self._reservation))
        if command == 0x43 and len(data) >= 6:  # Get SEL Entry
            _, record_id = struct.unpack_from("<HH", data)
            ids = [struct.unpack_from("<H", r)[0] for r in self.sel]
            if not self.sel:
                return NOT_PRESENT, []
            index = 0 if record_id in (0x0000,) else (ids.index(record_id) if record_id in ids else -1)
            if record_id == 0xFFFF:
                index = len(self.sel) - 1
            if index < 0:
                return NOT_PRESENT, []
            next_id = ids[index + 1] if index + 1 < len(ids) else 0xFFFF
            return OK, [*struct.pack("<H", next_id), *self.sel[index]]
        if command == 0x47 and len(data) >= 6:  # Clear SEL
            reservation = struct.unpack_from("<H", data)[0]
            if reservation != self._reservation:
                return RESERVATION_CANCELLED, []
            if data[2:5] != b"CLR":
                return INVALID_DATA, []
            if data[5] == 0xAA:
                self.sel.clear()
            return OK, [0x01]  # erasure completed
        return INVALID_COMMAND, []

    def _sensor(self, command: int, data: bytes, powered_on: bool) -> tuple[int, list[int]]:
        sensor = self.sensors.get(data[0]) if data else None
        if command not in (0x2D, 0x27):
            return INVALID_COMMAND, []
        if sensor is None:
            return NOT_PRESENT, []
        if isinstance(sensor, LabDiscreteSensor):
            if command == 0x27:
                return INVALID_COMMAND, []
            return OK, [0, 0xC0, sensor.states & 0xFF, 0x80 | (sensor.states >> 8 & 0x7F)]
        if command == 0x27:  # Get Sensor Thresholds: mask, LNC, LC, LNR, UNC, UC, UNR
            lnc, lc, unc, uc = sensor.thresholds
            mask = sum(1 << bit for bit, raw in zip((0, 1, 3, 4), sensor.thresholds, strict=True) if raw)
            return OK, [mask, lnc, lc, 0, unc, uc, 0]
        raw = sensor.on_raw if powered_on else sensor.off_raw
        if raw is None:
            return OK, [0, 0x60, 0]  # scanning enabled, reading unavailable
        lnc, lc, unc, uc = sensor.thresholds
        status = (
            (lnc and raw <= lnc) << 0 | (lc and raw <= lc) << 1 | (unc and raw >= unc) << 3 | (uc and raw >= uc) << 4
        )
        return OK, [raw, 0xC0, status]
