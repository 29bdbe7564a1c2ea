"""The driver interface every out-of-band backend implements, and the values it speaks in."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

#: Seconds a single BMC call may take, login included, before it fails as a timeout.
DEFAULT_TIMEOUT_S = 5.0


class DriverName(enum.StrEnum):
    """The backends get_driver() knows; the inventory's BMC.driver column stores these values."""

    IPMI = "ipmi"  # IPMI 2.0 over LAN (iLO, iDRAC, generic), through pyghmi
    REDFISH = "redfish"  # DMTF Redfish over HTTPS, through sushy
    FAKE = "fake"  # in memory, for the demo and tests

    @property
    def label(self) -> str:
        return _DRIVER_LABELS[self]


_DRIVER_LABELS = {
    DriverName.IPMI: "IPMI (iLO, iDRAC, generic)",
    DriverName.REDFISH: "Redfish",
    DriverName.FAKE: "Fake (demo and tests)",
}


class PowerState(enum.StrEnum):
    """Chassis power as a BMC reports it; the inventory's cached Machine.power_state stores these values."""

    ON = "on"  # chassis power is on
    OFF = "off"  # chassis power is off (standby power only)
    UNKNOWN = "unknown"  # never read, the BMC did not answer, or it did not say (e.g. Redfish "powering on")


class BootDevice(enum.StrEnum):
    PXE = "pxe"  # network boot
    DISK = "disk"  # the default local disk
    DEFAULT = "default"  # no override set: the firmware's own boot order
    OTHER = "other"  # an override we never set ourselves (CD, BIOS setup, ...); read-only


@dataclass(frozen=True)
class BmcTarget:
    """Where a BMC is and how to log in; the password never shows in repr, logs or errors."""

    address: str
    port: int
    username: str
    password: str = field(repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self):
        if not self.address:
            raise ValueError("BMC address is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"BMC port {self.port!r} is not a port number")
        if not self.timeout_s > 0:
            raise ValueError(f"BMC timeout {self.timeout_s!r} must be positive")

    @property
    def endpoint(self) -> str:
        """``address:port``, the way technicians name a BMC in messages."""
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


@runtime_checkable
class BmcDriver(Protocol):
    """One BMC, one small interface; every method raises a :class:`~provisioner.bmc.errors.BmcError`.

    Each call is short and bounded by ``target.timeout_s``; nothing here waits for a machine to boot.
    """

    target: BmcTarget

    def power_state(self) -> PowerState: ...

    def power_on(self) -> None:
        """Power the chassis on; already on is success."""

    def power_off(self, soft: bool = False) -> None:
        """Power off now, or ask the OS to shut down (ACPI) when ``soft``; already off is success."""

    def power_cycle(self) -> None:
        """Power on if off, hard reset if on."""

    def set_boot_device(self, device: BootDevice, once: bool = True, uefi: bool = False) -> None: ...

    def get_boot_device(self) -> BootDevice: ...

    def ping(self) -> float:
        """Seconds one authenticated round trip took; raises if unreachable or credentials are rejected."""
