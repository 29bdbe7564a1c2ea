"""Power through a machine's PDU outlets: for machines without a BMC, and as the second path when a BMC hangs.

The outlets of one machine may sit on one PDU (both power supplies on PDU A) or on two (A and B feeds). Each
PDU gets one outlet driver, behind the same per-device guard as a BMC, and the machine's power is their sum:
on when any outlet is on, off when all are off.
"""

from __future__ import annotations

from django.conf import settings

from core import queues
from provisioner.bmc import PowerState
from provisioner.bmc.guard import GuardedDriver
from provisioner.pdu import profile
from provisioner.pdu.driver import PduOutletDriver

from .models import Machine, PduOutlet


class OutletPower:
    """The power half of a driver over every outlet feeding one machine."""

    def __init__(self, machine: Machine, outlets: list[PduOutlet]):
        self.machine = machine
        by_pdu: dict[int, list[PduOutlet]] = {}
        for outlet in outlets:
            by_pdu.setdefault(outlet.pdu_id, []).append(outlet)
        self.groups: list[tuple[str, GuardedDriver]] = []
        for group in by_pdu.values():
            pdu = group[0].pdu
            driver = PduOutletDriver(
                pdu.target(settings.PDU_TIMEOUT_S), profile(pdu.profile), tuple(o.outlet for o in group)
            )
            guarded = GuardedDriver(
                driver,
                queues.connection(),
                min_interval_s=settings.BMC_MIN_INTERVAL_S,
                max_wait_s=settings.BMC_MAX_WAIT_S,
                key_prefix="provisioner:pdu:",
            )
            self.groups.append(
                (
                    f"{pdu.name} outlet{'s' if len(group) > 1 else ''} " + ", ".join(str(o.outlet) for o in group),
                    guarded,
                )
            )

    @property
    def label(self) -> str:
        """``PDU r12-pdu-a outlet 3`` (and ``r12-pdu-b outlet 3``), for result lines and the audit."""
        return "PDU " + " and ".join(name for name, _ in self.groups)

    def power_state(self) -> PowerState:
        states = [driver.power_state() for _, driver in self.groups]
        if PowerState.ON in states:
            return PowerState.ON
        if all(s is PowerState.OFF for s in states):
            return PowerState.OFF
        return PowerState.UNKNOWN

    def power_on(self) -> None:
        for _, driver in self.groups:
            driver.power_on()

    def power_off(self) -> None:
        for _, driver in self.groups:
            driver.power_off()

    def power_cycle(self) -> None:
        """Each PDU's own reboot of its outlets (off, its delay, on) when every feed is on, so both power
        supplies lose power together; all off then all on when only some feeds were on; on when all were off."""
        if len(self.groups) == 1:
            self.groups[0][1].power_cycle()
            return
        states = [driver.power_state() for _, driver in self.groups]
        if all(s is PowerState.OFF for s in states):
            self.power_on()
        elif all(s is PowerState.ON for s in states):
            for _, driver in self.groups:
                driver.power_cycle()
        else:
            self.power_off()
            self.power_on()

    def ping(self) -> float:
        return sum(driver.ping() for _, driver in self.groups)


def outlets_of(machine: Machine) -> OutletPower | None:
    """The machine's outlet power, or None when no outlet feeds it."""
    outlets = list(PduOutlet.objects.filter(machine=machine).select_related("pdu").order_by("pdu__name", "outlet"))
    return OutletPower(machine, outlets) if outlets else None
