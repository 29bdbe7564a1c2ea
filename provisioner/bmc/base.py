"""The driver interface every out-of-band backend implements, and the values it speaks in."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

#: Seconds a single BMC call may take, login included, before it fails as a timeout.
DEFAULT_TIMEOUT_S = 5.0


class DriverName(enum.StrEnum):
    """The built-in backends (registry.BUILT_IN); the inventory's BMC.driver column also takes plug-ins' names."""

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
    CD = "cd"  # the (virtual) CD/DVD drive: a BMC's virtual media, or a real optical drive
    DEFAULT = "default"  # no override set: the firmware's own boot order
    OTHER = "other"  # an override we never set ourselves (USB, BIOS setup, ...); read-only


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

    def set_boot_device(self, device: BootDevice, once: bool = True, uefi: bool | None = None) -> None:
        """Boot from ``device`` next time (``once``) or from now on. ``uefi``: the firmware boot mode to ask for,
        True for UEFI, False for legacy BIOS; None leaves the machine's mode as it is where the BMC can (a
        machine whose mode is not known must not be switched)."""

    def get_boot_device(self) -> BootDevice: ...

    def ping(self) -> float:
        """Seconds one authenticated round trip took; raises if unreachable or credentials are rejected."""


# -- hardware RAID: a capability only some drivers have ---------------------------------------------------------


class RaidLevel(enum.StrEnum):
    """The RAID levels a volume may be built with; the values are Redfish's ``RAIDType``."""

    RAID0 = "RAID0"  # striped, no redundancy
    RAID1 = "RAID1"  # mirrored
    RAID5 = "RAID5"  # striped with one drive's worth of parity
    RAID10 = "RAID10"  # striped over mirrored pairs

    @property
    def min_drives(self) -> int:
        return _MIN_DRIVES[self]


_MIN_DRIVES = {RaidLevel.RAID0: 1, RaidLevel.RAID1: 2, RaidLevel.RAID5: 3, RaidLevel.RAID10: 4}


def raid_drive_count_problem(level: RaidLevel, count: int) -> str:
    """Why ``count`` drives cannot make a ``level`` volume, or "" when they can."""
    level = RaidLevel(level)
    if count < level.min_drives:
        return f"{level} needs at least {level.min_drives} drives, not {count}"
    if level == RaidLevel.RAID10 and count % 2:
        return f"RAID10 mirrors drives in pairs: it needs an even number of drives, not {count}"
    return ""


@dataclass(frozen=True)
class Drive:
    """A physical drive behind a storage controller, as the BMC names it."""

    id: str  # the BMC's drive id (Redfish ``Drive.Id``), what a hardware_raid task lists
    name: str = ""
    capacity_bytes: int | None = None
    media_type: str = ""  # "HDD", "SSD", or "" when not said
    serial: str = ""


@dataclass(frozen=True)
class Volume:
    """A logical drive (virtual disk) a controller presents to the machine."""

    id: str
    name: str = ""
    raid_level: str = ""  # a RaidLevel value, another Redfish RAIDType, or "" when the BMC does not say
    capacity_bytes: int | None = None
    drives: tuple[str, ...] = ()  # drive ids, when the BMC links them


@dataclass(frozen=True)
class StorageController:
    """One storage subsystem (Redfish ``Storage``): its drives and the volumes built over them."""

    id: str  # the BMC's id (Redfish ``Storage.Id``), what a hardware_raid task names as ``controller``
    name: str = ""
    raid_levels: tuple[str, ...] = ()  # what the controller says it supports; empty when it does not say
    drives: tuple[Drive, ...] = ()
    volumes: tuple[Volume, ...] = ()


@dataclass(frozen=True)
class VolumeRequest:
    """What a caller asks a controller to build; ``drives`` None lets the controller choose."""

    level: RaidLevel
    name: str
    drives: tuple[str, ...] | None = None
    capacity_bytes: int | None = None
    controller: str | None = None  # a StorageController.id; None: the only controller with drives


@dataclass(frozen=True)
class VolumeResult:
    """What a create_volume call did."""

    controller: str
    volume: str  # the new (or already present) volume's id; "" while the BMC still applies the request
    drives: tuple[str, ...] = ()  # the drives asked for; empty when the controller chose
    created: bool = True  # False: a volume of that name was already there, nothing sent
    # The BMC took the request as a task (HTTP 202): its monitor's path, and when the BMC applies it.
    task: str = ""
    apply_time: str = ""  # Redfish OperationApplyTime sent ("OnReset"), or "" for the service's default


@runtime_checkable
class StorageDriver(Protocol):
    """Hardware RAID through the BMC; drivers without a storage service raise BmcUnsupported from both."""

    def storage(self) -> list[StorageController]:
        """Every storage controller with its drives and volumes."""

    def create_volume(self, request: VolumeRequest) -> VolumeResult:
        """Build a volume; a volume of the same name on the controller already is success (nothing sent)."""
