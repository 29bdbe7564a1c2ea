"""Power through switched PDU outlets over SNMP (v2c, v3), for machines without a BMC and as a second
power path when a BMC hangs.

Plain Python, no Django: the control plane passes a :class:`PduTarget`, a vendor profile and the outlet
numbers, and gets back the BMC layer's PowerState and error taxonomy.

    from provisioner.pdu.driver import PduOutletDriver

    driver = PduOutletDriver(PduTarget("10.0.0.9", community=secret), profile("apc"), outlets=(3,))
    driver.power_cycle()

Modules: ``profiles`` (per vendor: state and command OIDs and values), ``target`` (address and
credentials), ``snmp`` (pysnmp on an event loop of our own, with bounded waits), ``driver`` (the outlet
driver), ``errors`` (the BMC taxonomy, worded for a PDU). The package itself does not import ``driver``, so
the inventory can read profiles and build targets without loading pysnmp.
"""

from __future__ import annotations

from .errors import (
    OutletMissing,
    PduAuthError,
    PduError,
    PduTimeout,
    PduUnreachable,
    PduUnsupported,
    PduWriteNotApplied,
)
from .profiles import MAX_OUTLETS, PROFILES, VendorProfile, profile
from .target import AuthProtocol, PduTarget, PrivProtocol, SnmpVersion

__all__ = [
    "MAX_OUTLETS",
    "PROFILES",
    "AuthProtocol",
    "OutletMissing",
    "PduAuthError",
    "PduError",
    "PduTarget",
    "PduTimeout",
    "PduUnreachable",
    "PduUnsupported",
    "PduWriteNotApplied",
    "PrivProtocol",
    "SnmpVersion",
    "VendorProfile",
    "profile",
]
