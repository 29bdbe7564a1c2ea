"""One PDU outlet (or the outlets feeding one machine's power supplies) as a power driver.

It speaks the BMC driver's power half (power_state, power_on, power_off, power_cycle, ping) with the same
enums and error taxonomy, so inventory.power and the guard use it as they use a BMC. A PDU can only
switch power: boot-device calls raise :class:`~provisioner.bmc.errors.CapabilityMissing`.

Every write is read back: a PDU that accepts a SET but leaves the outlet as it was (a locked outlet, a
command the firmware ignores) is an error, not a success.
"""

from __future__ import annotations

import time

from provisioner.bmc.base import BootDevice, PowerState
from provisioner.bmc.errors import CapabilityMissing

from .errors import OutletMissing, PduUnsupported, PduWriteNotApplied
from .profiles import MAX_OUTLETS, SYS_UPTIME, VendorProfile
from .snmp import MISSING, get, set_integers
from .target import PduTarget

#: After a write, how long the outlet may take to show its new state (some relays switch in sequence).
VERIFY_S = 2.0
#: Between two reads while waiting for it.
VERIFY_POLL_S = 0.2


class PduOutletDriver:
    """Power through ``outlets`` of the PDU at ``target``, in the vendor's ``profile``."""

    def __init__(self, target: PduTarget, profile: VendorProfile, outlets: tuple[int, ...] | int):
        outlets = (outlets,) if isinstance(outlets, int) else tuple(outlets)
        if not outlets:
            raise ValueError("a PDU driver needs at least one outlet")
        if len(outlets) > MAX_OUTLETS or len(set(outlets)) != len(outlets):
            raise ValueError(f"outlets {outlets!r}: give up to {MAX_OUTLETS} different outlet numbers")
        for outlet in outlets:
            if not isinstance(outlet, int) or outlet < 1:
                raise ValueError(f"outlet {outlet!r} is not an outlet number (1 or more)")
        self.target = target
        self.profile = profile
        self.outlets = outlets

    def __repr__(self) -> str:
        return f"PduOutletDriver({self.target!r}, {self.profile.name}, outlets={self.outlets})"

    @property
    def label(self) -> str:
        """``PDU 10.0.0.9:161 outlet 3`` (``outlets 3, 4``), for result lines."""
        numbers = ", ".join(map(str, self.outlets))
        return f"PDU {self.target.endpoint} outlet{'s' if len(self.outlets) > 1 else ''} {numbers}"

    # -- reads -------------------------------------------------------------------------------------------

    def _states(self) -> list[PowerState | int]:
        """Each outlet's state; a value the profile does not know is returned as the raw int."""
        values = get(self.target, [self.profile.state_oid_of(o) for o in self.outlets])
        states = []
        for outlet, value in zip(self.outlets, values, strict=True):
            if value is MISSING:
                raise self._missing(outlet)
            if not isinstance(value, int):
                raise PduUnsupported(self.target.endpoint, f"outlet {outlet} state reads {value!r}, not a number")
            states.append(self.profile.states.get(value, value))
        return states

    def _missing(self, outlet: int) -> OutletMissing:
        return OutletMissing(
            self.target.endpoint,
            f"outlet {outlet} does not exist on this PDU ({self.profile.label})",
        )

    def power_state(self) -> PowerState:
        """ON if any outlet is on (one power supply keeps a machine running), OFF if all are off."""
        states = self._states()
        if any(s is PowerState.ON for s in states):
            return PowerState.ON
        if all(s is PowerState.OFF for s in states):
            return PowerState.OFF
        return PowerState.UNKNOWN

    def ping(self) -> float:
        """Seconds one authenticated round trip took; also checks that the outlets exist."""
        started = time.monotonic()
        oids = [SYS_UPTIME, *(self.profile.state_oid_of(o) for o in self.outlets)]
        values = get(self.target, oids)
        for outlet, value in zip(self.outlets, values[1:], strict=True):
            if value is MISSING:
                raise self._missing(outlet)
        return time.monotonic() - started

    # -- writes ------------------------------------------------------------------------------------------

    def _command(self, value: int, accept: set) -> None:
        answers = set_integers(
            self.target, [self.profile.command_oid_of(o) for o in self.outlets], [value] * len(self.outlets)
        )
        for outlet, answer in zip(self.outlets, answers, strict=True):
            if answer is MISSING:
                raise self._missing(outlet)
        deadline = time.monotonic() + min(VERIFY_S, self.target.timeout_s)
        while True:
            states = self._states()
            if all(s in accept for s in states):
                return
            if time.monotonic() + VERIFY_POLL_S > deadline:
                shown = ", ".join(f"outlet {o} reads {s}" for o, s in zip(self.outlets, states, strict=True))
                raise PduWriteNotApplied(self.target.endpoint, f"the PDU accepted the command ({value}) but {shown}")
            time.sleep(VERIFY_POLL_S)

    def power_on(self) -> None:
        self._command(self.profile.on, {PowerState.ON})

    def power_off(self, soft: bool = False) -> None:
        if soft:
            raise PduUnsupported(
                self.target.endpoint, "a PDU can only cut power; it cannot ask the operating system to shut down"
            )
        self._command(self.profile.off, {PowerState.OFF})

    def power_cycle(self) -> None:
        """Power on if every outlet is off; otherwise the PDU's own reboot (off, its delay, on) on each outlet
        at once, so a machine with two power supplies really loses power."""
        if self.power_state() is PowerState.OFF:
            self.power_on()
            return
        # Right after the command an outlet may still be on, already off, or show the reboot value.
        self._command(self.profile.cycle, {PowerState.ON, PowerState.OFF, *self.profile.cycling})

    # -- what a PDU cannot do ----------------------------------------------------------------------------

    def set_boot_device(self, device: BootDevice, once: bool = True, uefi: bool | None = None) -> None:
        raise CapabilityMissing(self.target.endpoint, "a PDU outlet can only switch power, not set a boot device")

    def get_boot_device(self) -> BootDevice:
        raise CapabilityMissing(
            self.target.endpoint, "a PDU outlet can only switch power; it cannot read a boot device"
        )
