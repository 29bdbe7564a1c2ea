"""An in-memory BMC for the demo and for fast tests.

State lives per ``(address, port)`` and is shared by every driver for that target in this process, so a
test (or the demo's simulated machine) can look at what the driver did and inject delays and faults.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from .base import BmcTarget, BootDevice, PowerState, StorageController, VolumeRequest, VolumeResult
from .errors import BmcAuthError, BmcTimeout, BmcUnreachable, BmcUnsupported
from .health import Health, LogEntry, SensorKind, SensorReading, threshold_health
from .media import Media, url_problem
from .serial import FakeSerialConsole

FAULT_UNREACHABLE = "unreachable"
FAULT_AUTH = "auth"
FAULTS = (FAULT_UNREACHABLE, FAULT_AUTH)


@dataclass(eq=False)
class FakeBmc:
    """The simulated chassis behind a fake target."""

    power: PowerState = PowerState.OFF
    boot_device: BootDevice = BootDevice.DEFAULT
    boot_once: bool = True
    boot_uefi: bool | None = None  # None: the mode was left as it was
    #: When set, any other password is rejected as a real BMC would.
    password: str | None = None
    #: Added to every call; a delay past the target's timeout turns into a timeout.
    delay_s: float = 0.0
    #: ``None``, ``"unreachable"`` or ``"auth"``.
    fault: str | None = None
    #: The virtual CD: the URL inserted, "" when empty (the fake never fetches it).
    media_image: str = ""
    #: Method names in call order, for assertions.
    calls: list[str] = field(default_factory=list)
    #: The device each power-on booted from, in order.
    boots: list[BootDevice] = field(default_factory=list)
    #: Called with the boot device whenever the chassis powers on or resets.
    on_power_on: list[Callable[[BootDevice], None]] = field(default_factory=list)
    #: The sensors as the BMC holds them; values drift a little on each read while powered on.
    sensors: list[SensorReading] = field(default_factory=lambda: list(DEMO_SENSORS))
    #: The system event log, oldest first.
    sel: list[LogEntry] = field(default_factory=lambda: demo_sel())
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def log_event(self, message: str, severity: Health = Health.OK, sensor: str = "") -> LogEntry:
        """Append an entry to the event log, as the BMC would when a sensor crosses a threshold."""
        with self.lock:
            next_id = max((int(e.id) for e in self.sel), default=0) + 1
            entry = LogEntry(str(next_id), datetime.now(UTC).replace(microsecond=0), Health(severity), message, sensor)
            self.sel.append(entry)
            return entry

    def _boot(self) -> None:
        device = self.boot_device
        if self.boot_once:
            self.boot_device = BootDevice.DEFAULT
        self.boots.append(device)
        for callback in list(self.on_power_on):
            callback(device)


def _sensor(name, kind, value, unit, lc=None, lnc=None, unc=None, uc=None) -> SensorReading:
    return SensorReading(
        name=name,
        kind=kind,
        value=value,
        unit=unit,
        health=threshold_health(value, lower_critical=lc, lower_non_critical=lnc, upper_non_critical=unc,
                                upper_critical=uc),
        lower_critical=lc,
        lower_non_critical=lnc,
        upper_non_critical=unc,
        upper_critical=uc,
    )  # fmt: skip


# What a 1U server's BMC typically lists; the demo's machine pages show these.
DEMO_SENSORS = (
    _sensor("Inlet Temp", SensorKind.TEMPERATURE, 23.0, "°C", lc=-7, lnc=3, unc=42, uc=47),
    _sensor("CPU1 Temp", SensorKind.TEMPERATURE, 48.0, "°C", unc=85, uc=95),
    _sensor("CPU2 Temp", SensorKind.TEMPERATURE, 51.0, "°C", unc=85, uc=95),
    _sensor("Fan1 RPM", SensorKind.FAN, 6120.0, "RPM", lc=600, lnc=840),
    _sensor("Fan2 RPM", SensorKind.FAN, 6000.0, "RPM", lc=600, lnc=840),
    _sensor("PSU1 Voltage", SensorKind.VOLTAGE, 230.0, "V", lc=180, lnc=190, unc=250, uc=264),
    _sensor("12V", SensorKind.VOLTAGE, 12.1, "V", lc=10.8, lnc=11.4, unc=12.6, uc=13.2),
    _sensor("System Power", SensorKind.POWER, 182.0, "W", unc=900, uc=1000),
)


STANDBY = ("Inlet", "PSU")


def demo_sel() -> list[LogEntry]:
    start = datetime(2026, 1, 5, 9, 12, tzinfo=UTC)
    return [
        LogEntry("1", start, Health.OK, "Event log cleared", "SEL"),
        LogEntry("2", start + timedelta(minutes=3), Health.OK, "Power supply input restored", "PSU1 Status"),
        LogEntry("3", start + timedelta(days=2, hours=4), Health.WARNING, "Upper non-critical going high",
                 "CPU2 Temp"),
        LogEntry("4", start + timedelta(days=2, hours=4, minutes=6), Health.OK,
                 "Upper non-critical going high deasserted", "CPU2 Temp"),
    ]  # fmt: skip


_registry: dict[tuple[str, int], FakeBmc] = {}
_registry_lock = threading.Lock()


def fake_bmc(address: str, port: int) -> FakeBmc:
    """The shared state for ``address:port``, created powered off on first use."""
    with _registry_lock:
        return _registry.setdefault((address, port), FakeBmc())


def reset_fakes() -> None:
    """Forget every fake BMC (tests call this between cases)."""
    with _registry_lock:
        _registry.clear()


NO_STORAGE = "the fake driver has no storage service: hardware RAID needs Redfish"


class FakeDriver:
    def __init__(self, target: BmcTarget):
        self.target = target
        self.bmc = fake_bmc(target.address, target.port)

    def __repr__(self) -> str:
        return f"FakeDriver({self.target.endpoint})"

    def _enter(self, name: str) -> None:
        bmc = self.bmc
        delay = bmc.delay_s
        if bmc.fault == FAULT_UNREACHABLE or delay > self.target.timeout_s:
            time.sleep(min(delay, self.target.timeout_s) if delay else 0)
            if bmc.fault == FAULT_UNREACHABLE:
                raise BmcUnreachable(self.target.endpoint, "no answer (fake BMC set unreachable)")
            raise BmcTimeout(self.target.endpoint, f"no answer within {self.target.timeout_s:g} s")
        if delay:
            time.sleep(delay)
        if bmc.fault == FAULT_AUTH or (bmc.password is not None and bmc.password != self.target.password):
            raise BmcAuthError(self.target.endpoint, f"credentials for user {self.target.username!r} rejected")
        bmc.calls.append(name)

    def power_state(self) -> PowerState:
        self._enter("power_state")
        return PowerState(self.bmc.power)

    def power_on(self) -> None:
        self._enter("power_on")
        with self.bmc.lock:
            if self.bmc.power != PowerState.ON:
                self.bmc.power = PowerState.ON
                self.bmc._boot()

    def power_off(self, soft: bool = False) -> None:
        self._enter("power_off_soft" if soft else "power_off")
        with self.bmc.lock:
            self.bmc.power = PowerState.OFF

    def power_cycle(self) -> None:
        self._enter("power_cycle")
        with self.bmc.lock:
            self.bmc.power = PowerState.ON
            self.bmc._boot()

    def set_boot_device(self, device: BootDevice, once: bool = True, uefi: bool | None = None) -> None:
        self._enter("set_boot_device")
        if device not in (BootDevice.PXE, BootDevice.DISK, BootDevice.CD):
            raise BmcUnsupported(self.target.endpoint, f"cannot set boot device {device!s}")
        with self.bmc.lock:
            self.bmc.boot_device, self.bmc.boot_once, self.bmc.boot_uefi = BootDevice(device), once, uefi

    def get_boot_device(self) -> BootDevice:
        self._enter("get_boot_device")
        return BootDevice(self.bmc.boot_device)

    def ping(self) -> float:
        started = time.monotonic()
        self._enter("ping")
        return time.monotonic() - started

    def sensors(self) -> list[SensorReading]:
        self._enter("sensors")
        with self.bmc.lock:
            readings = list(self.bmc.sensors)
            if self.bmc.power != PowerState.ON:
                # Powered off, a server's BMC reads only what has standby power (inlet, PSUs); the rest is absent.
                return [
                    r if r.name.startswith(STANDBY) else replace(r, value=None, health=Health.UNKNOWN) for r in readings
                ]
            return readings

    def events(self) -> list[LogEntry]:
        self._enter("events")
        with self.bmc.lock:
            return list(self.bmc.sel)

    def clear_events(self) -> int:
        self._enter("clear_events")
        with self.bmc.lock:
            count = len(self.bmc.sel)
            self.bmc.sel.clear()
            if count:
                # Real BMCs log the clearing itself as the first entry of the new log.
                self.bmc.log_event("Event log cleared", Health.OK, "SEL")
            return count

    def storage(self) -> list[StorageController]:
        raise BmcUnsupported(self.target.endpoint, NO_STORAGE)

    def create_volume(self, request: VolumeRequest) -> VolumeResult:
        raise BmcUnsupported(self.target.endpoint, NO_STORAGE)

    def media(self) -> Media:
        self._enter("media")
        return Media(device="Cd", inserted=bool(self.bmc.media_image), image=self.bmc.media_image)

    def insert_media(self, url: str) -> None:
        self._enter("insert_media")
        problem = url_problem(url)
        if problem:
            raise BmcUnsupported(self.target.endpoint, f"insert virtual media: {problem}")
        with self.bmc.lock:
            self.bmc.media_image = url

    def eject_media(self) -> bool:
        self._enter("eject_media")
        with self.bmc.lock:
            had, self.bmc.media_image = bool(self.bmc.media_image), ""
        return had

    def console(self, label: str = "") -> FakeSerialConsole:
        """A simulated serial console: a login prompt and a tiny shell that echoes."""
        self._enter("console")
        return FakeSerialConsole(label or "demo")
