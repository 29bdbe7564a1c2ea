"""Sensors (SDR and readings with thresholds) and the system event log over IPMI, on our own loop.

pyghmi's ``Command.get_sensor_data`` and ``get_event_log`` are synchronous and wait on its IO thread with no
overall deadline, so this module sends the raw commands through the IPMI driver (and so through
ipmi_loop.py) and borrows only pyghmi's decoding: ``SDREntry`` for sensor records and readings, and its event
tables (``pyghmi.ipmi.private.constants``) for the words and severity of each event.

Reading a sensor repository takes a few hundred round trips on a big server, so it is cached per BMC for the
life of the process (a worker runs jobs in-process, see installs/management/commands/worker.py), keyed by
what Get SDR Repository Info says (record count and the last addition and erase times): a firmware update
that changes the SDR changes the key. Every public call has one overall budget (health.HEALTH_BUDGET_S) on
top of the per-round-trip timeout.
"""

from __future__ import annotations

import collections
import struct
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pyghmi.constants as pyghmi_const
from pyghmi.ipmi import sdr as pyghmi_sdr
from pyghmi.ipmi.private import constants as event_consts

from .errors import BmcError, BmcTimeout, BmcUnsupported
from .health import HEALTH_BUDGET_S, Health, LogEntry, SensorKind, SensorReading

NETFN_SENSOR = 0x04
NETFN_STORAGE = 0x0A
CMD_GET_SENSOR_THRESHOLDS = 0x27
CMD_GET_SENSOR_READING = 0x2D
CMD_GET_SDR_REPOSITORY_INFO = 0x20
CMD_RESERVE_SDR_REPOSITORY = 0x22
CMD_GET_SDR = 0x23
CMD_GET_SEL_INFO = 0x40
CMD_RESERVE_SEL = 0x42
CMD_GET_SEL_ENTRY = 0x43
CMD_CLEAR_SEL = 0x47

BMC_SLAVE_ADDRESS = 0x20
LAST_RECORD = 0xFFFF
# Completion codes this module acts on.
CC_RESERVATION_CANCELLED = 0xC5
CC_NOT_PRESENT = 0xCB  # requested sensor, data or record not present
CC_CANNOT_RETURN_BYTES = 0xCA  # cannot return the number of bytes asked for: read in smaller pieces
CC_LENGTH = (0xC7, 0xC8, 0xCA, 0xFF)  # request or reply too long for this BMC
# Partial SDR reads: the header (5 bytes) first, then the body in pieces this big. 16 bytes fits every BMC's
# message buffer (ipmitool uses the same).
SDR_PIECE = 16
# More records than any real repository holds (the record id is 16 bits): a BMC whose "next record" links
# loop is stopped here instead of running to the budget.
MAX_RECORDS = 4096
# Sensor repositories kept in memory, least recently used dropped first.
SDR_CACHE_SIZE = 2048

_KIND_BY_SENSOR_TYPE = {0x01: SensorKind.TEMPERATURE, 0x02: SensorKind.VOLTAGE, 0x03: SensorKind.CURRENT,
                        0x04: SensorKind.FAN}  # fmt: skip
_KIND_BY_UNIT = {"°C": SensorKind.TEMPERATURE, "°F": SensorKind.TEMPERATURE, "V": SensorKind.VOLTAGE,
                 "A": SensorKind.CURRENT, "RPM": SensorKind.FAN, "W": SensorKind.POWER}  # fmt: skip


def _health(pyghmi_health: int) -> Health:
    if pyghmi_health & (pyghmi_const.Health.Critical | pyghmi_const.Health.Failed):
        return Health.CRITICAL
    if pyghmi_health & pyghmi_const.Health.Warning:
        return Health.WARNING
    return Health.OK


@dataclass(frozen=True)
class _Record:
    raw: bytes
    entry: pyghmi_sdr.SDREntry

    @property
    def threshold_access(self) -> int:
        """Sensor capabilities bits 3:2 (full records): 0 none, 1 readable, 2 readable and settable, 3 fixed."""
        return (self.raw[11] >> 2) & 0x03 if self.raw[3] == 0x01 and len(self.raw) > 11 else 0


class _PyghmiCommand:
    """What ``SDREntry`` calls back into for non-linear sensors (Get Sensor Reading Factors), on our loop."""

    def __init__(self, session: _Session):
        self._session = session

    def raw_command(self, netfn, command, data=(), **_):
        return {"data": self._session.call("sensor reading factors", netfn, command, tuple(data)), "code": 0}


class _Session:
    """The driver's round trips under one overall deadline."""

    def __init__(self, driver):
        self.driver = driver
        self.target = driver.target
        self.deadline = time.monotonic() + HEALTH_BUDGET_S

    def call(self, what: str, netfn: int, command: int, data: tuple[int, ...] = ()) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BmcTimeout(self.target.endpoint, f"{what}: not done within {HEALTH_BUDGET_S:g} s")
        target = self.target if left >= self.target.timeout_s else replace(self.target, timeout_s=left)
        return self.driver._call(what, netfn, command, data, target=target)


_sdr_cache: collections.OrderedDict[str, tuple[bytes, list[_Record]]] = collections.OrderedDict()
_sdr_lock = threading.Lock()


def forget_sdr(endpoint: str | None = None) -> None:
    """Drop the cached repository of one BMC (or all): the next read fetches it again."""
    with _sdr_lock:
        if endpoint is None:
            _sdr_cache.clear()
        else:
            _sdr_cache.pop(endpoint, None)


def _code(exc: BmcUnsupported) -> int | None:
    return getattr(exc, "completion_code", None)


def read_sdr(session: _Session) -> list[_Record]:
    """The sensor records of the BMC's SDR repository, from the cache when the repository has not changed."""
    info = session.call("SDR repository info", NETFN_STORAGE, CMD_GET_SDR_REPOSITORY_INFO)
    if not info or info[0] != 0x51:
        raise BmcUnsupported(session.target.endpoint, "the BMC's SDR repository is not IPMI 1.5/2.0 (version 51h)")
    stamp = bytes(info[1:3]) + bytes(info[5:13])  # record count, last addition, last erase
    endpoint = session.target.endpoint
    with _sdr_lock:
        cached = _sdr_cache.get(endpoint)
        if cached is not None and cached[0] == stamp:
            _sdr_cache.move_to_end(endpoint)
            return cached[1]
    records = []
    record_id, whole, reservation = 0, True, 0
    for _ in range(MAX_RECORDS if info[1] | info[2] << 8 else 0):
        if record_id == LAST_RECORD:
            break
        raw = b""
        if whole:
            try:
                next_id, raw = _get_sdr_whole(session, record_id)
            except BmcError as exc:
                if _code(exc) not in CC_LENGTH:
                    raise
            # A BMC that cannot send a whole record in one reply says so, or cuts it short: read in pieces.
            whole = len(raw) >= 5 and len(raw) >= 5 + raw[4]
        if not whole:
            next_id, raw, reservation = _get_sdr_pieces(session, record_id, reservation)
        if len(raw) >= 5 and raw[2] == 0x51:
            try:
                entry = pyghmi_sdr.SDREntry(bytearray(raw), event_consts)
            except (NotImplementedError, IndexError, KeyError, UnicodeDecodeError, ValueError):
                entry = None  # one odd or OEM record must not hide the others
            if entry is not None and entry.sdrtype == pyghmi_sdr.TYPE_SENSOR:
                records.append(_Record(bytes(raw), entry))
        if next_id == record_id:
            raise BmcUnsupported(endpoint, f"SDR record {record_id:#06x} names itself as the next one")
        record_id = next_id
    with _sdr_lock:
        _sdr_cache[endpoint] = (stamp, records)
        _sdr_cache.move_to_end(endpoint)
        while len(_sdr_cache) > SDR_CACHE_SIZE:
            _sdr_cache.popitem(last=False)
    return records


def _get_sdr_whole(session: _Session, record_id: int) -> tuple[int, bytes]:
    data = session.call("get SDR", NETFN_STORAGE, CMD_GET_SDR, (0, 0, record_id & 0xFF, record_id >> 8, 0, 0xFF))
    return data[0] | data[1] << 8, bytes(data[2:])


def _get_sdr_pieces(session: _Session, record_id: int, reservation: int) -> tuple[int, bytes, int]:
    """One record read in pieces under a reservation (a partial read needs one); a reservation the BMC
    cancels (the repository changed) is renewed and the record read again, a few times at most."""
    for _ in range(4):
        if not reservation:
            rsv = session.call("reserve SDR repository", NETFN_STORAGE, CMD_RESERVE_SDR_REPOSITORY)
            reservation = rsv[0] | rsv[1] << 8
        try:
            next_id, raw = _read_pieces(session, record_id, reservation)
        except BmcUnsupported as exc:
            if _code(exc) != CC_RESERVATION_CANCELLED:
                raise
            reservation = 0
            continue
        return next_id, raw, reservation
    raise BmcUnsupported(session.target.endpoint, f"SDR record {record_id:#06x}: the reservation kept being cancelled")


def _read_pieces(session: _Session, record_id: int, reservation: int) -> tuple[int, bytes]:
    rsv = (reservation & 0xFF, reservation >> 8, record_id & 0xFF, record_id >> 8)
    head = session.call("get SDR header", NETFN_STORAGE, CMD_GET_SDR, (*rsv, 0, 5))
    next_id, raw = head[0] | head[1] << 8, bytearray(head[2:7])
    total = 5 + raw[4]
    while len(raw) < total:
        size = min(SDR_PIECE, total - len(raw))
        piece = session.call("get SDR", NETFN_STORAGE, CMD_GET_SDR, (*rsv, len(raw), size))
        if len(piece) <= 2:
            raise BmcUnsupported(session.target.endpoint, f"SDR record {record_id:#06x}: empty piece")
        raw.extend(piece[2 : 2 + size])
    return next_id, bytes(raw)


# --- sensors -----------------------------------------------------------------------------------------------


def sensors(driver) -> list[SensorReading]:
    session = _Session(driver)
    command = _PyghmiCommand(session)
    readings = []
    for record in read_sdr(session):
        entry = record.entry
        # Sensors behind another controller (an Intel ME at 0x2C, a LUN other than 0) need bridged requests,
        # which our loop does not send; the BMC's own sensors are the ones that matter for health.
        if not entry.readable or entry.sensor_owner != BMC_SLAVE_ADDRESS or entry.sensor_lun != 0:
            continue
        try:
            data = session.call(f"read sensor {entry.name!r}", NETFN_SENSOR, CMD_GET_SENSOR_READING,
                                (entry.sensor_number,))  # fmt: skip
        except BmcUnsupported as exc:
            if _code(exc) == CC_NOT_PRESENT:
                continue  # an optional device that is not fitted
            raise
        readings.append(_reading(session, command, record, data))
    return readings


def _reading(session: _Session, command: _PyghmiCommand, record: _Record, data: bytes) -> SensorReading:
    entry = record.entry
    unit = getattr(entry, "unit_suffix", "").strip()
    kind = _KIND_BY_SENSOR_TYPE.get(entry.sensor_type_number) or _KIND_BY_UNIT.get(unit, SensorKind.OTHER)
    if len(data) < 3:
        data = bytes(data) + bytes(3 - len(data))
    decoded = entry.decode_sensor_reading(command, bytearray(data))
    value = decoded.value
    if decoded.unavailable:
        health = Health.UNKNOWN
    else:
        health = _health(decoded.health)
    thresholds = _thresholds(session, command, record) if record.threshold_access in (1, 2) else {}
    return SensorReading(
        name=entry.name,
        kind=kind,
        value=None if value is None else round(value, 3),
        unit=unit,
        health=health,
        states=tuple(s for s in decoded.states if value is None),
        **thresholds,
    )


def _thresholds(session: _Session, command: _PyghmiCommand, record: _Record) -> dict:
    entry = record.entry
    try:
        data = session.call(f"thresholds of {entry.name!r}", NETFN_SENSOR, CMD_GET_SENSOR_THRESHOLDS,
                            (entry.sensor_number,))  # fmt: skip
    except BmcUnsupported:
        return {}  # the reading stands without them
    if len(data) < 7:
        return {}
    mask, (lnc, lc, _lnr, unc, uc, _unr) = data[0], data[1:7]

    def value(bit: int, raw: int) -> float | None:
        if not mask & (1 << bit):
            return None
        if entry.numeric_format == 2:
            raw = pyghmi_sdr.twos_complement(raw, 8)
        elif entry.numeric_format == 1:
            raw = pyghmi_sdr.ones_complement(raw, 8)
        return round(entry.decode_value(command, raw), 3)

    found = {
        "lower_non_critical": value(0, lnc),
        "lower_critical": value(1, lc),
        "upper_non_critical": value(3, unc),
        "upper_critical": value(4, uc),
    }
    if entry.linearization == 7:  # 1/x: the BMC's "upper" is the lower value
        found = {
            "lower_non_critical": found["upper_non_critical"],
            "lower_critical": found["upper_critical"],
            "upper_non_critical": found["lower_non_critical"],
            "upper_critical": found["lower_critical"],
        }
    return found


# --- system event log --------------------------------------------------------------------------------------


def sel_count(session: _Session) -> int:
    info = session.call("SEL info", NETFN_STORAGE, CMD_GET_SEL_INFO)
    return info[1] | info[2] << 8 if len(info) >= 3 else 0


def events(driver) -> list[LogEntry]:
    session = _Session(driver)
    if not sel_count(session):
        return []
    try:
        sdr = {(r.entry.sensor_owner, r.entry.sensor_number): r for r in read_sdr(session)}
    except BmcUnsupported:
        sdr = {}  # entries without sensor names are still worth reading
    command = _PyghmiCommand(session)
    entries = []
    record_id = 0
    for _ in range(MAX_RECORDS):
        if record_id == LAST_RECORD:
            break
        try:
            data = session.call("get SEL entry", NETFN_STORAGE, CMD_GET_SEL_ENTRY,
                                (0, 0, record_id & 0xFF, record_id >> 8, 0, 0xFF))  # fmt: skip
        except BmcUnsupported as exc:
            if _code(exc) == CC_NOT_PRESENT:
                break  # emptied while we read
            raise
        if len(data) < 18:
            break
        next_id = data[0] | data[1] << 8
        entries.append(_sel_entry(bytes(data[2:18]), sdr, command))
        if next_id == record_id:
            break
        record_id = next_id
    return entries


def _sel_entry(raw: bytes, sdr: dict, command: _PyghmiCommand) -> LogEntry:
    record_id, record_type = struct.unpack_from("<HB", raw)
    entry_id = str(record_id)
    if record_type >= 0xE0:
        return LogEntry(entry_id, None, Health.UNKNOWN, f"OEM record (type {record_type:#04x}): {raw[3:].hex()}")
    (stamp,) = struct.unpack_from("<I", raw, 3)
    # Times before 0x20000000 count seconds since the BMC started (its clock was not set yet): not a date.
    at = datetime.fromtimestamp(stamp, UTC) if 0x20000000 <= stamp < 0xFFFFFFFF else None
    if record_type != 0x02:
        return LogEntry(entry_id, at, Health.UNKNOWN, f"OEM record (type {record_type:#04x}): {raw[7:].hex()}")
    generator, sensor_type, sensor_number, direction = raw[7], raw[10], raw[11], raw[12]
    event_data = raw[13:16]
    deasserted = bool(direction & 0x80)
    event_type = direction & 0x7F
    offset = event_data[0] & 0x0F
    if event_type == 0x6F:
        table = event_consts.sensor_type_offsets.get(sensor_type, {})
    else:
        table = event_consts.generic_type_offsets.get(event_type, {})
    known = table.get(offset)
    type_name = event_consts.sensor_type_codes.get(sensor_type, f"sensor type {sensor_type:#04x}")
    if known is None:
        message, severity = f"{type_name} event, offset {offset}", Health.UNKNOWN
    elif deasserted:
        message = known.get("deassertion_desc") or f"{known['desc']} deasserted"
        severity = _health(known.get("deassertion_severity", pyghmi_const.Health.Ok))
    else:
        message, severity = known["desc"], _health(known.get("severity", pyghmi_const.Health.Ok))
    record = sdr.get((generator, sensor_number))
    sensor = record.entry.name if record is not None else f"{type_name} #{sensor_number}"
    if event_type == 0x01 and record is not None:
        message += _threshold_detail(record, event_data, command)
    return LogEntry(entry_id, at, severity, message, sensor)


def _threshold_detail(record: _Record, event_data: bytes, command: _PyghmiCommand) -> str:
    """ ", reading 97 °C, threshold 95 °C" when the entry carries them (event data bytes 2 and 3)."""
    entry = record.entry
    unit = getattr(entry, "unit_suffix", "").strip()
    parts = []
    for flag_shift, raw, label in ((6, event_data[1], "reading"), (4, event_data[2], "threshold")):
        if (event_data[0] >> flag_shift) & 0x03 != 0x01:
            continue
        try:
            value = entry.decode_value(command, raw)
        except (AttributeError, ArithmeticError, ValueError):
            continue
        parts.append(f"{label} {value:g} {unit}".rstrip())
    return f", {', '.join(parts)}" if parts else ""


def clear_events(driver) -> int:
    session = _Session(driver)
    count = sel_count(session)
    if not count:
        return 0
    rsv = session.call("reserve SEL", NETFN_STORAGE, CMD_RESERVE_SEL)
    # "CLR" and AAh: initiate erase. Erasure runs on in the BMC; we do not wait for it.
    session.call("clear SEL", NETFN_STORAGE, CMD_CLEAR_SEL, (rsv[0], rsv[1], ord("C"), ord("L"), ord("R"), 0xAA))
    return count
