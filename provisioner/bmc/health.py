"""Sensors and the system event log: what a BMC says about the machine's health, in the project's own types.

A driver with the ``sensors`` and ``event_log`` capabilities (registry.Capability) implements
:class:`HealthDriver`. Readings and entries are plain frozen values, so the control plane can store them as
JSON (``as_dict`` / ``from_dict``) and the page shows what the worker read, not what a BMC answers later.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Protocol, runtime_checkable

#: Longest one sensors(), events() or clear_events() call may take, all its round trips together. A first read
#: of a big IPMI SDR is a few hundred round trips (tens of ms each on a busy BMC); past this the call fails as a
#: timeout rather than holding the BMC's guard lock (and the worker) for minutes.
HEALTH_BUDGET_S = 60.0


class Health(enum.StrEnum):
    """How a reading or an entry stands; ordered from good to bad by :data:`SEVERITY_ORDER`."""

    OK = "ok"  # within its thresholds, or an informational entry
    WARNING = "warning"  # past a non-critical threshold
    CRITICAL = "critical"  # past a critical or non-recoverable threshold; the hardware needs a person
    UNKNOWN = "unknown"  # no reading (sensor absent, not scanning, or the BMC did not say)


SEVERITY_ORDER = {Health.OK: 0, Health.UNKNOWN: 1, Health.WARNING: 2, Health.CRITICAL: 3}


def worst(values) -> Health:
    """The worst health of ``values`` (OK when empty)."""
    found = Health.OK
    for value in values:
        if SEVERITY_ORDER[Health(value)] > SEVERITY_ORDER[found]:
            found = Health(value)
    return found


class SensorKind(enum.StrEnum):
    """What a sensor measures, as far as the page groups them."""

    TEMPERATURE = "temperature"
    FAN = "fan"
    VOLTAGE = "voltage"
    CURRENT = "current"
    POWER = "power"
    OTHER = "other"  # discrete sensors (presence, intrusion, ...) and anything else


@dataclass(frozen=True)
class SensorReading:
    """One sensor as read now, with the thresholds the BMC holds for it (None where it has none)."""

    name: str
    kind: SensorKind = SensorKind.OTHER
    value: float | None = None
    unit: str = ""
    health: Health = Health.UNKNOWN
    lower_critical: float | None = None
    lower_non_critical: float | None = None
    upper_non_critical: float | None = None
    upper_critical: float | None = None
    #: For discrete sensors (and as the BMC's own words): the states asserted, e.g. "Presence detected".
    states: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        data = asdict(self)
        data["kind"], data["health"], data["states"] = str(self.kind), str(self.health), list(self.states)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SensorReading:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["kind"] = SensorKind(values.get("kind", SensorKind.OTHER))
        values["health"] = Health(values.get("health", Health.UNKNOWN))
        values["states"] = tuple(values.get("states") or ())
        return cls(**values)


@dataclass(frozen=True)
class LogEntry:
    """One system event log entry. ``id`` is the BMC's record id: unique within the log until it is cleared."""

    id: str
    at: datetime | None  # None: the BMC gave no usable time (e.g. an entry logged before its clock was set)
    severity: Health
    message: str
    sensor: str = ""  # the sensor that logged it, when the BMC says

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "at": self.at.isoformat() if self.at is not None else None,
            "severity": str(self.severity),
            "message": self.message,
            "sensor": self.sensor,
        }

    @classmethod
    def from_dict(cls, data: dict) -> LogEntry:
        at = data.get("at")
        return cls(
            id=str(data["id"]),
            at=datetime.fromisoformat(at) if at else None,
            severity=Health(data.get("severity", Health.UNKNOWN)),
            message=str(data.get("message", "")),
            sensor=str(data.get("sensor", "")),
        )


@runtime_checkable
class HealthDriver(Protocol):
    """Sensors and the event log through the BMC; each method raises a BmcError like the power calls."""

    def sensors(self) -> list[SensorReading]:
        """Every readable sensor, in the BMC's order."""

    def events(self) -> list[LogEntry]:
        """The whole system event log, oldest first."""

    def clear_events(self) -> int:
        """Empty the system event log; returns how many entries it held (0: nothing was sent)."""


def threshold_health(
    value: float | None,
    *,
    lower_critical: float | None = None,
    lower_non_critical: float | None = None,
    upper_non_critical: float | None = None,
    upper_critical: float | None = None,
) -> Health:
    """Health from a value and its thresholds, for BMCs that give thresholds but no status of their own."""
    if value is None:
        return Health.UNKNOWN
    if (upper_critical is not None and value >= upper_critical) or (
        lower_critical is not None and value <= lower_critical
    ):
        return Health.CRITICAL
    if (upper_non_critical is not None and value >= upper_non_critical) or (
        lower_non_critical is not None and value <= lower_non_critical
    ):
        return Health.WARNING
    return Health.OK
