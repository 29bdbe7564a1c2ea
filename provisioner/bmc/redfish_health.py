"""Sensors and the system event log over Redfish.

Sensors: each chassis of the system, through its ``Thermal`` and ``Power`` resources (two requests; every
BMC of the last decade serves them, deprecated or not) or, where it has neither, the newer ``Sensors``
collection. The event log: the ``LogServices`` of the system and of the managers that manage it, taking the
one that holds the SEL (``LogEntryType: SEL``, or a service named like one). sushy models neither the
Sensors collection nor log services, so both are read as JSON through sushy's own connection (its session,
retries and error mapping).
"""

from __future__ import annotations

import time
from datetime import datetime

from .errors import BmcTimeout, BmcUnsupported
from .health import HEALTH_BUDGET_S, Health, LogEntry, SensorKind, SensorReading, threshold_health

# Members a collection may list before we stop following nextLink or reading members one by one.
MAX_MEMBERS = 2000
# Log services named like the SEL on common BMCs (iDRAC "Sel", Supermicro "Log1", OpenBMC "EventLog", HPE "IML").
SEL_NAMES = ("sel", "eventlog", "log1", "iml")
_HEALTH = {"OK": Health.OK, "Warning": Health.WARNING, "Critical": Health.CRITICAL}
_READING_TYPE = {
    "Temperature": (SensorKind.TEMPERATURE, "°C"),
    "Rotational": (SensorKind.FAN, "RPM"),
    "Voltage": (SensorKind.VOLTAGE, "V"),
    "Current": (SensorKind.CURRENT, "A"),
    "Power": (SensorKind.POWER, "W"),
}


class _Reader:
    def __init__(self, driver):
        self.driver = driver
        self.endpoint = driver.target.endpoint
        self.deadline = time.monotonic() + HEALTH_BUDGET_S
        self.system = driver._system()
        self.conn = self.system._conn  # sushy's connection: its auth, timeouts and error mapping

    def get(self, path: str) -> dict:
        if time.monotonic() > self.deadline:
            raise BmcTimeout(self.endpoint, f"reading {path}: not done within {HEALTH_BUDGET_S:g} s")
        try:
            body = self.conn.get(path=path).json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise BmcUnsupported(self.endpoint, f"{path} is not a JSON object")
        return body

    def members(self, path: str) -> list[dict]:
        """A collection's members as full resources, following nextLink; one GET per member only where the
        collection lists bare links."""
        out: list[dict] = []
        page: str | None = path
        while page and len(out) < MAX_MEMBERS:
            body = self.get(page)
            out += [m for m in body.get("Members") or [] if isinstance(m, dict)]
            page = body.get("Members@odata.nextLink")
        return [self.get(m["@odata.id"]) if set(m) <= {"@odata.id"} and "@odata.id" in m else m for m in out]


def _link(body: dict, name: str) -> str | None:
    value = body.get(name)
    return value.get("@odata.id") if isinstance(value, dict) else None


def _links(body: dict, name: str) -> list[str]:
    values = (body.get("Links") or {}).get(name) or []
    return [v["@odata.id"] for v in values if isinstance(v, dict) and "@odata.id" in v]


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _status_health(item: dict, value: float | None, thresholds: dict) -> Health:
    status = item.get("Status") or {}
    if status.get("State") in ("Absent", "Disabled", "UnavailableOffline") or value is None:
        return Health.UNKNOWN
    health = _HEALTH.get(status.get("Health"))
    # A BMC's own word wins; without one, judge the reading by its thresholds.
    return health if health is not None else threshold_health(value, **thresholds)


def _sensor(item: dict, kind: SensorKind, unit: str, value_key: str) -> SensorReading:
    value = _number(item.get(value_key))
    # Where a BMC gives only the fatal threshold (fans often have just LowerThresholdFatal), that is the critical one.
    thresholds = {
        "lower_critical": _number(item.get("LowerThresholdCritical", item.get("LowerThresholdFatal"))),
        "lower_non_critical": _number(item.get("LowerThresholdNonCritical")),
        "upper_non_critical": _number(item.get("UpperThresholdNonCritical")),
        "upper_critical": _number(item.get("UpperThresholdCritical", item.get("UpperThresholdFatal"))),
    }
    return SensorReading(
        name=str(item.get("Name") or item.get("MemberId") or "?"),
        kind=kind,
        value=value,
        unit=unit,
        health=_status_health(item, value, thresholds),
        **thresholds,
    )


def _thermal(body: dict) -> list[SensorReading]:
    out = [_sensor(t, SensorKind.TEMPERATURE, "°C", "ReadingCelsius") for t in body.get("Temperatures") or []]
    for fan in body.get("Fans") or []:
        unit = "%" if fan.get("ReadingUnits") == "Percent" else "RPM"
        out.append(_sensor(fan, SensorKind.FAN, unit, "Reading"))
    return out


def _power(body: dict) -> list[SensorReading]:
    out = [_sensor(v, SensorKind.VOLTAGE, "V", "ReadingVolts") for v in body.get("Voltages") or []]
    for control in body.get("PowerControl") or []:
        out.append(_sensor(control, SensorKind.POWER, "W", "PowerConsumedWatts"))
    return out


def _sensors_collection(item: dict) -> SensorReading:
    kind, unit = _READING_TYPE.get(item.get("ReadingType"), (SensorKind.OTHER, ""))
    value = _number(item.get("Reading"))
    thresholds = item.get("Thresholds") or {}

    def threshold(name: str) -> float | None:
        return _number((thresholds.get(name) or {}).get("Reading"))

    found = {
        "lower_critical": threshold("LowerCritical"),
        "lower_non_critical": threshold("LowerCaution"),
        "upper_non_critical": threshold("UpperCaution"),
        "upper_critical": threshold("UpperCritical"),
    }
    return SensorReading(
        name=str(item.get("Name") or item.get("Id") or "?"),
        kind=kind,
        value=value,
        unit=str(item.get("ReadingUnits") or unit) if kind == SensorKind.OTHER else unit,
        health=_status_health(item, value, found),
        **found,
    )


def sensors(driver) -> list[SensorReading]:
    reader = _Reader(driver)
    system = reader.system.json
    chassis_paths = _links(system, "Chassis")
    if not chassis_paths:
        chassis_paths = [m["@odata.id"] for m in reader.get("/redfish/v1/Chassis").get("Members") or []][:1]
    out: list[SensorReading] = []
    for path in chassis_paths:
        chassis = reader.get(path)
        thermal, power, collection = _link(chassis, "Thermal"), _link(chassis, "Power"), _link(chassis, "Sensors")
        if thermal or power:
            out += _thermal(reader.get(thermal)) if thermal else []
            out += _power(reader.get(power)) if power else []
        elif collection:
            out += [_sensors_collection(item) for item in reader.members(collection)]
    return out


# --- system event log --------------------------------------------------------------------------------------


def _sel_service(reader: _Reader) -> dict:
    system = reader.system.json
    candidates: list[dict] = []
    owners = [system] + [reader.get(path) for path in _links(system, "ManagedBy")]
    for owner in owners:
        path = _link(owner, "LogServices")
        if path:
            candidates += reader.members(path)
    for service in candidates:
        if service.get("LogEntryType") == "SEL":
            return service
    for service in candidates:
        if str(service.get("Id", "")).lower() in SEL_NAMES:
            return service
    raise BmcUnsupported(reader.endpoint, "the Redfish service has no system event log (no SEL LogService)")


def _entry(item: dict) -> LogEntry:
    created = item.get("Created")
    try:
        at = datetime.fromisoformat(created) if isinstance(created, str) else None
    except ValueError:
        at = None
    sensor = str(item.get("SensorType") or "")
    if item.get("SensorNumber") is not None and sensor:
        sensor = f"{sensor} #{item['SensorNumber']}"
    return LogEntry(
        id=str(item.get("Id", "")),
        at=at,
        severity=_HEALTH.get(item.get("Severity"), Health.UNKNOWN),
        message=str(item.get("Message") or item.get("Name") or ""),
        sensor=sensor,
    )


def _sort_key(entry: LogEntry):
    return (entry.at is None, entry.at.timestamp() if entry.at else 0, int(entry.id) if entry.id.isdigit() else 0)


def events(driver) -> list[LogEntry]:
    reader = _Reader(driver)
    service = _sel_service(reader)
    path = _link(service, "Entries")
    if not path:
        return []
    # BMCs list entries newest first (iDRAC) or oldest first (OpenBMC): order them ourselves.
    return sorted((_entry(item) for item in reader.members(path)), key=_sort_key)


def clear_events(driver) -> int:
    reader = _Reader(driver)
    service = _sel_service(reader)
    path = _link(service, "Entries")
    count = 0
    if path:
        body = reader.get(path)
        count = body.get("Members@odata.count", len(body.get("Members") or []))
    if not count:
        return 0
    action = (service.get("Actions") or {}).get("#LogService.ClearLog") or {}
    target = action.get("target")
    if not target:
        raise BmcUnsupported(reader.endpoint, "the SEL LogService offers no ClearLog action")
    reader.conn.post(path=target, data={})
    return int(count)
