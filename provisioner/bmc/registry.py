"""Which out-of-band drivers exist and what each can do.

A driver is one module and one entry point. The built-in ones are listed below; a separately installed
package adds its own under the ``provisioner.drivers`` entry-point group, naming a :class:`DriverInfo`:

    # acme_bmc/__init__.py
    DRIVER = DriverInfo(
        name="acme",
        label="ACME BMC",
        factory="acme_bmc.driver:AcmeDriver",
        capabilities={Capability.POWER, Capability.BOOT_DEVICE},
        default_port=8443,
    )

    # pyproject.toml of that package
    [project.entry-points."provisioner.drivers"]
    acme = "acme_bmc:DRIVER"

The inventory stores the name; its choices, the admin, the API and the workflows read this registry, so a
new driver needs no migration. Capabilities are declared, not discovered: the UI offers, and the API and
the engine accept, only what a machine's driver declares, and anything else is refused in words
(:func:`require`) before any BMC is contacted.
"""

from __future__ import annotations

import enum
import importlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from .base import BmcTarget
from .errors import CapabilityMissing

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "provisioner.drivers"
#: What a driver name may look like (it is stored in BMC.driver, max 16 characters).
NAME_MAX = 16


class Capability(enum.StrEnum):
    """Something a driver can do; a driver declares the set it has."""

    POWER = "power"  # power_state, power_on, power_off, power_cycle, ping
    BOOT_DEVICE = "boot_device"  # set_boot_device / get_boot_device (network, disk)
    BOOT_MODE = "boot_mode"  # the UEFI / legacy flag of a boot override is honoured
    VIRTUAL_MEDIA = "virtual_media"  # insert an ISO by URL, boot from it, eject
    CONSOLE = "console"  # a serial console (IPMI Serial-over-LAN, Redfish's serial console)
    SENSORS = "sensors"  # temperatures, fans, voltages with thresholds: sensors() (health.HealthDriver)
    EVENT_LOG = "event_log"  # the system event log: events(), clear_events() (health.HealthDriver)
    BIOS_SETTINGS = "bios_settings"  # firmware settings read and changed
    HARDWARE_RAID = "hardware_raid"  # storage controllers and volumes (StorageDriver)

    @property
    def label(self) -> str:
        return _CAPABILITY_LABELS[self]


_CAPABILITY_LABELS = {
    Capability.POWER: "power on, off, cycle and status",
    Capability.BOOT_DEVICE: "boot from network or disk",
    Capability.BOOT_MODE: "UEFI or legacy boot mode",
    Capability.VIRTUAL_MEDIA: "virtual media (boot an ISO by URL)",
    Capability.CONSOLE: "serial console",
    Capability.SENSORS: "sensors",
    Capability.EVENT_LOG: "system event log",
    Capability.BIOS_SETTINGS: "BIOS settings",
    Capability.HARDWARE_RAID: "hardware RAID",
}


@dataclass(frozen=True)
class DriverInfo:
    """A driver as the registry knows it, without importing its protocol library.

    ``factory`` builds a driver for a :class:`BmcTarget`: a callable, or ``"module:attribute"`` imported on
    first use so that listing drivers never loads pyghmi, sushy or a plug-in's dependencies.
    """

    name: str
    label: str
    factory: str | Callable[[BmcTarget], object] = field(repr=False)
    capabilities: frozenset[Capability] = frozenset()
    default_port: int = 623
    description: str = ""
    #: Where it came from: "built-in", or the distribution that registered it.
    origin: str = "built-in"

    def __post_init__(self):
        if not self.name or len(self.name) > NAME_MAX or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"driver name {self.name!r}: use up to {NAME_MAX} letters, digits, '-' or '_'")
        object.__setattr__(self, "capabilities", frozenset(Capability(c) for c in self.capabilities))
        if not 0 < self.default_port < 65536:
            raise ValueError(f"driver {self.name}: default port {self.default_port!r} is not a port number")

    def can(self, capability: Capability | str) -> bool:
        return Capability(capability) in self.capabilities

    def build(self, target: BmcTarget):
        factory = self.factory
        if isinstance(factory, str):
            module_name, _, attribute = factory.partition(":")
            factory = getattr(importlib.import_module(module_name), attribute)
        return factory(target)

    @property
    def capability_labels(self) -> list[str]:
        return [c.label for c in Capability if c in self.capabilities]


BUILT_IN: tuple[DriverInfo, ...] = (
    DriverInfo(
        name="ipmi",
        label="IPMI (iLO, iDRAC, generic)",
        factory="provisioner.bmc.ipmi:IpmiDriver",
        capabilities=frozenset(
            {
                Capability.POWER,
                Capability.BOOT_DEVICE,
                Capability.BOOT_MODE,
                Capability.CONSOLE,
                Capability.SENSORS,
                Capability.EVENT_LOG,
            }
        ),
        default_port=623,
        description="IPMI 2.0 over LAN (RMCP+, UDP), through pyghmi.",
    ),
    DriverInfo(
        name="redfish",
        label="Redfish",
        factory="provisioner.bmc.redfish:RedfishDriver",
        capabilities=frozenset(
            {
                Capability.POWER,
                Capability.BOOT_DEVICE,
                Capability.BOOT_MODE,
                Capability.VIRTUAL_MEDIA,
                Capability.SENSORS,
                Capability.EVENT_LOG,
                Capability.HARDWARE_RAID,
            }
        ),
        default_port=443,
        description="DMTF Redfish over HTTPS, through sushy.",
    ),
    DriverInfo(
        name="fake",
        label="Fake (demo and tests)",
        factory="provisioner.bmc.fake:FakeDriver",
        capabilities=frozenset(
            {
                Capability.POWER,
                Capability.BOOT_DEVICE,
                Capability.BOOT_MODE,
                Capability.VIRTUAL_MEDIA,
                Capability.CONSOLE,
                Capability.SENSORS,
                Capability.EVENT_LOG,
            }
        ),
        default_port=623,
        description="An in-memory chassis, for the demo and tests.",
    ),
)

_lock = threading.Lock()
_drivers: dict[str, DriverInfo] | None = None
#: Plug-ins that failed to load, as "name: reason", for the admin to see.
load_errors: list[str] = []


def _load() -> dict[str, DriverInfo]:
    found = {info.name: info for info in BUILT_IN}
    errors = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        origin = entry.dist.name if entry.dist is not None else entry.value
        try:
            info = entry.load()
            if not isinstance(info, DriverInfo):
                raise TypeError(f"{entry.value} is a {type(info).__name__}, not a DriverInfo")
        except Exception as exc:  # one broken plug-in must not take the others (or the app) down
            errors.append(f"{entry.name} ({origin}): {exc}")
            log.error("BMC driver plug-in %s from %s did not load: %s", entry.name, origin, exc)
            continue
        if info.name in found:
            errors.append(f"{entry.name} ({origin}): the name {info.name!r} is taken by {found[info.name].origin}")
            log.error("BMC driver plug-in %s from %s: name %r already registered", entry.name, origin, info.name)
            continue
        found[info.name] = DriverInfo(
            name=info.name,
            label=info.label,
            factory=info.factory,
            capabilities=info.capabilities,
            default_port=info.default_port,
            description=info.description,
            origin=origin,
        )
    load_errors[:] = errors
    return found


def drivers() -> dict[str, DriverInfo]:
    """Every known driver by name: the built-in ones, then the plug-ins, loaded once per process."""
    global _drivers
    with _lock:
        if _drivers is None:
            _drivers = _load()
        return _drivers


def reload() -> dict[str, DriverInfo]:
    """Look at the entry points again (after a package was installed into a running process, in tests)."""
    global _drivers
    with _lock:
        _drivers = None
    return drivers()


def info(name: str) -> DriverInfo:
    """The driver called ``name``; ValueError naming the known ones otherwise."""
    found = drivers().get(name)
    if found is None:
        raise ValueError(f"unknown BMC driver {name!r}; known drivers: {', '.join(sorted(drivers()))}")
    return found


def choices() -> list[tuple[str, str]]:
    """(name, label) pairs for model and form fields; a callable, so a new driver needs no migration."""
    return [(d.name, d.label) for d in drivers().values()]


def capabilities(name: str) -> frozenset[Capability]:
    """What the driver called ``name`` can do; nothing for a name no longer registered."""
    found = drivers().get(name)
    return found.capabilities if found is not None else frozenset()


def missing(name: str, needed: Iterable[Capability | str]) -> list[Capability]:
    have = capabilities(name)
    return [Capability(c) for c in needed if Capability(c) not in have]


def refusal(name: str, capability: Capability | str, subject: str = "this machine") -> str:
    """The sentence a technician reads when ``subject``'s driver lacks ``capability``."""
    capability = Capability(capability)
    found = drivers().get(name)
    if found is None:
        return f"{subject}: its BMC driver {name!r} is not installed here, so it cannot do {capability.label}."
    return f"{subject}: the {found.label} driver cannot do {capability.label}."


def require(name: str, capability: Capability | str, subject: str = "this machine", endpoint: str = "") -> None:
    """Raise :class:`CapabilityMissing` (not retryable) unless the driver declares ``capability``."""
    if Capability(capability) not in capabilities(name):
        raise CapabilityMissing(endpoint or subject, refusal(name, capability, subject))
