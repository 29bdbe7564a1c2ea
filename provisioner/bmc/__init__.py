"""Out-of-band control of bare-metal machines through their BMCs.

Plain Python, no Django: the control plane passes in a :class:`BmcTarget` and gets back our own enums
and errors, whatever the protocol underneath.

    driver = get_driver("ipmi", BmcTarget("10.0.0.5", 623, "admin", secret, timeout_s=5))
    if driver.power_state() is PowerState.OFF:
        driver.set_boot_device(BootDevice.PXE, once=True)
        driver.power_on()

Hardware RAID is a capability of its own (``StorageDriver``: ``storage()`` and ``create_volume()``); only the
Redfish driver has it, the others raise :class:`BmcUnsupported` saying so.

Virtual media is another (``media.VirtualMediaDriver``: ``insert_media(url)``, ``eject_media()``, ``media()``), with
``BootDevice.CD`` to boot from it once; Redfish and the fake driver have it.

Which drivers exist and what each can do (power, boot device, boot mode, virtual media, console, sensors,
event log, BIOS settings, hardware RAID) is the ``registry``'s: built-in drivers plus any a package adds
under the ``provisioner.drivers`` entry point (docs/drivers.md).

Modules: ``base`` (the Protocols, target and enums: ``DriverName`` and
``PowerState`` are also the values the inventory stores), ``errors`` (retryable vs fatal), ``ipmi`` and
``ipmi_loop`` (pyghmi, with our own deadlines), ``redfish`` (sushy), ``fake`` (in memory, for the demo and
tests) and ``guard`` (one command in flight per BMC and a minimum interval, across processes, via Redis).
"""

from __future__ import annotations

import sys

from . import registry
from .base import (
    DEFAULT_TIMEOUT_S,
    BmcDriver,
    BmcTarget,
    BootDevice,
    Drive,
    DriverName,
    PowerState,
    RaidLevel,
    StorageController,
    StorageDriver,
    Volume,
    VolumeRequest,
    VolumeResult,
    raid_drive_count_problem,
)
from .errors import (
    BmcAuthError,
    BmcBusy,
    BmcError,
    BmcTimeout,
    BmcUnreachable,
    BmcUnsupported,
    CapabilityMissing,
)
from .media import Media, VirtualMediaDriver
from .registry import Capability, DriverInfo

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "BmcAuthError",
    "BmcBusy",
    "BmcDriver",
    "BmcError",
    "BmcTarget",
    "BmcTimeout",
    "BmcUnreachable",
    "BmcUnsupported",
    "BootDevice",
    "Capability",
    "CapabilityMissing",
    "Drive",
    "DriverInfo",
    "DriverName",
    "Media",
    "PowerState",
    "RaidLevel",
    "StorageController",
    "StorageDriver",
    "Volume",
    "VolumeRequest",
    "VirtualMediaDriver",
    "VolumeResult",
    "close_sessions",
    "get_driver",
    "raid_drive_count_problem",
]


def get_driver(name: str, target: BmcTarget) -> BmcDriver:
    """The driver called ``name`` (built in: "ipmi", "redfish", "fake"; or a plug-in's) for ``target``.

    Backends are imported on first use so that, say, the fake driver never loads pyghmi or sushy.
    """
    return registry.info(name).build(target)


def close_sessions(timeout_s: float = 1.0) -> None:
    """Log out of every idle IPMI session this process holds; call it before a short-lived process ends.

    BMCs have few session slots and free an abandoned one only after their own timeout. This runs at
    interpreter exit by itself, but not in a process that leaves through ``os._exit`` (an RQ work horse).
    A no-op when no IPMI driver was used, and it never imports pyghmi.
    """
    loop_module = sys.modules.get(f"{__name__}.ipmi_loop")
    if loop_module is not None:
        loop_module.close_sessions(timeout_s)
