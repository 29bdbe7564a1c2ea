"""What each PDU vendor's MIB calls an outlet's state and its on/off/reboot command.

A profile is data: the state column and command column (an outlet's index appended), the integer values
the command takes, and what the state column's values mean. Adding a vendor is one entry here.

Where a MIB has one object for both (APC: reading the control object gives the state), state and command
are the same column; otherwise a write is checked by reading the state column back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from provisioner.bmc.base import PowerState

#: The most outlets one machine may draw from (dual power supplies, or a chassis with four).
MAX_OUTLETS = 4
#: SNMPv2-MIB sysUpTime.0: what ping reads (every agent has it).
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


@dataclass(frozen=True)
class VendorProfile:
    name: str
    label: str
    state_oid: str  # the outlet-state column, without the index
    command_oid: str  # the outlet-command column, without the index
    on: int
    off: int
    cycle: int
    states: Mapping[int, PowerState] = field(default_factory=dict)
    #: Values the state column shows while the PDU is running a reboot (off, then on after its delay).
    cycling: frozenset[int] = frozenset()
    #: How an outlet number becomes the row index (Tripp Lite prefixes the device number).
    index: str = "{outlet}"
    mib: str = ""

    def __post_init__(self):
        object.__setattr__(self, "states", MappingProxyType(dict(self.states)))

    def states_for(self, state: PowerState) -> set[int]:
        """The state column's values that mean ``state``."""
        return {value for value, meaning in self.states.items() if meaning is state}

    def state_oid_of(self, outlet: int) -> str:
        return f"{self.state_oid}.{self.index.format(outlet=outlet)}"

    def command_oid_of(self, outlet: int) -> str:
        return f"{self.command_oid}.{self.index.format(outlet=outlet)}"


_APC_READ = {1: PowerState.ON, 2: PowerState.OFF}

PROFILES: dict[str, VendorProfile] = {
    profile.name: profile
    for profile in (
        VendorProfile(
            name="apc",
            label="APC Switched Rack PDU (rPDU)",
            mib="PowerNet-MIB rPDUOutletControlOutletCommand",
            # Reading the command object gives the state: immediateOn(1) when on, immediateOff(2) when off.
            state_oid="1.3.6.1.4.1.318.1.1.12.3.3.1.1.4",
            command_oid="1.3.6.1.4.1.318.1.1.12.3.3.1.1.4",
            on=1,  # immediateOn
            off=2,  # immediateOff
            cycle=3,  # immediateReboot: off, then on after the outlet's reboot duration
            states=_APC_READ,
            cycling=frozenset({3}),
        ),
        VendorProfile(
            name="apc-masterswitch",
            label="APC MasterSwitch (sPDU, older firmware)",
            mib="PowerNet-MIB sPDUOutletCtl",
            state_oid="1.3.6.1.4.1.318.1.1.4.4.2.1.3",
            command_oid="1.3.6.1.4.1.318.1.1.4.4.2.1.3",
            on=1,  # outletOn
            off=2,  # outletOff
            cycle=3,  # outletReboot
            states={**_APC_READ, 4: PowerState.UNKNOWN},  # outletUnknown(4)
            cycling=frozenset({3}),
        ),
        VendorProfile(
            name="tripplite-ats",
            label="Tripp Lite / Eaton ATS PDU (PDUMH…AT)",
            mib="TRIPPLITE-PRODUCTS tlpAtsOutletState / tlpAtsOutletCommand",
            state_oid="1.3.6.1.4.1.850.1.1.3.4.3.3.1.1.4",  # off(1), on(2)
            command_oid="1.3.6.1.4.1.850.1.1.3.4.3.3.1.1.6",  # turnOff(1), turnOn(2), cycle(3); reads idle(0)
            on=2,
            off=1,
            cycle=3,
            states={1: PowerState.OFF, 2: PowerState.ON, 0: PowerState.UNKNOWN},
            index="1.{outlet}",  # tlpDeviceIndex 1: the PDU itself
        ),
        VendorProfile(
            name="tripplite",
            label="Tripp Lite / Eaton switched PDU",
            mib="TRIPPLITE-PRODUCTS tlpPduOutletState / tlpPduOutletCommand",
            state_oid="1.3.6.1.4.1.850.1.1.3.2.3.3.1.1.4",
            command_oid="1.3.6.1.4.1.850.1.1.3.2.3.3.1.1.6",
            on=2,
            off=1,
            cycle=3,
            states={1: PowerState.OFF, 2: PowerState.ON, 0: PowerState.UNKNOWN},
            index="1.{outlet}",
        ),
    )
}


def profile(name: str) -> VendorProfile:
    found = PROFILES.get(name)
    if found is None:
        raise ValueError(f"unknown PDU profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}")
    return found


def choices() -> list[tuple[str, str]]:
    return [(p.name, p.label) for p in PROFILES.values()]
