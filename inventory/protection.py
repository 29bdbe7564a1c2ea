"""The protected-machine rule, in one place: the power actions, the install batch and the install steps
ask it whether a machine in production may be touched.

A protected machine refuses whatever can take down its running system or lead to a reinstall; status,
power on and boot-from-disk stay allowed (they cannot hurt a running system).
"""

from collections.abc import Iterable

from .models import Machine

# Each refused action with the words a technician reads in the refusal.
REFUSED_WHEN_PROTECTED = {
    "off": "power off",
    "cycle": "power cycle",
    "pxe": "network boot",
    "cd": "boot from a CD or virtual media",
    "install": "install",
    "raid": "hardware RAID",
    "commission": "commissioning (it reboots into the memory OS)",
    "test": "hardware tests (they reboot into the memory OS)",
    "release": "release (it erases every disk)",
}


def refused(machines: Iterable[Machine], action: str) -> list[Machine]:
    """The machines among `machines` on which protection refuses `action` (none when it is harmless)."""
    if action not in REFUSED_WHEN_PROTECTED:
        return []
    return [machine for machine in machines if machine.protected]


def refusal_message(machines: Iterable[Machine], action: str) -> str:
    """What to tell the technician: which machines refused what, and how to go on."""
    hostnames = ", ".join(machine.hostname for machine in machines)
    return (
        f"Protected, {REFUSED_WHEN_PROTECTED[action]} refused: {hostnames}. "
        "Unprotect with a reason first if this is intended."
    )
