"""A machine's life as data: its states (MachineStatus), the moves between them, and the actions people take.

new → commissioning → ready → deploying → deployed → releasing → ready, with testing from ready (or broken),
failed when an operation fails, broken when a hardware test fails (or a person says so), and maintenance when a
person takes the machine out of service. ``move`` is the one writer of ``Machine.status``: it checks TRANSITIONS,
keeps the reason and the time, and audits every move. The pages, the REST API and ``manage.py machine`` offer an
action only where ``actions_for`` says the table allows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from audit.service import Actor, record

from .models import BUSY_STATUSES, Machine, MachineStatus

S = MachineStatus
BUSY = frozenset(BUSY_STATUSES)

TRANSITIONS: dict[str, frozenset[str]] = {
    S.NEW: frozenset({S.COMMISSIONING, S.DEPLOYING, S.BROKEN, S.MAINTENANCE}),
    # An operation ends where its outcome says; cancelled before it touched the machine, where it started.
    S.COMMISSIONING: frozenset({S.READY, S.FAILED, S.BROKEN, S.NEW, S.MAINTENANCE}),
    S.READY: frozenset({S.COMMISSIONING, S.TESTING, S.DEPLOYING, S.RELEASING, S.BROKEN, S.MAINTENANCE}),
    S.TESTING: frozenset({S.READY, S.BROKEN, S.FAILED, S.MAINTENANCE}),
    S.DEPLOYING: frozenset({S.DEPLOYED, S.FAILED, S.READY, S.NEW}),
    # A deployed machine is reinstalled in place (unless protected), or released.
    S.DEPLOYED: frozenset({S.DEPLOYING, S.RELEASING, S.BROKEN, S.MAINTENANCE}),
    S.RELEASING: frozenset({S.READY, S.FAILED, S.DEPLOYED}),
    S.FAILED: frozenset({S.COMMISSIONING, S.TESTING, S.DEPLOYING, S.RELEASING, S.BROKEN, S.MAINTENANCE}),
    S.BROKEN: frozenset({S.COMMISSIONING, S.TESTING, S.READY, S.MAINTENANCE}),
    S.MAINTENANCE: frozenset({S.NEW, S.READY, S.COMMISSIONING, S.TESTING, S.BROKEN}),
}


@dataclass(frozen=True)
class Action:
    name: str  # what the page, the API and the command line call it
    label: str
    to: str  # the status it moves the machine to (an operation's first status)
    operation: bool  # runs an install (commission, test, deploy, release) rather than only changing the status
    needs_reason: bool = False
    destructive: bool = False  # confirm by typing the host name
    help: str = ""


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action("commission", "Commission", S.COMMISSIONING, True,
               help="Boot the memory OS and record the hardware (versioned)."),
        Action("test", "Test hardware", S.TESTING, True, help="Run the hardware tests; a failure marks it broken."),
        Action("deploy", "Deploy", S.DEPLOYING, True, destructive=True, help="Install an OS profile."),
        Action("release", "Release", S.RELEASING, True, destructive=True,
               help="Erase every disk, verify, and make it ready again."),
        Action("mark-broken", "Mark broken", S.BROKEN, False, needs_reason=True),
        Action("mark-fixed", "Mark fixed", S.READY, False, needs_reason=True),
        Action("enter-maintenance", "Enter maintenance", S.MAINTENANCE, False, needs_reason=True),
        Action("exit-maintenance", "Exit maintenance", S.READY, False),
    )
}  # fmt: skip

# Which statuses an action that only changes the status starts from (beyond what the table allows).
_FROM = {
    "mark-fixed": frozenset({S.BROKEN}),
    "exit-maintenance": frozenset({S.MAINTENANCE}),
}


class LifecycleRefused(Exception):
    """The move is not in the table; the message says where the machine is and what it can do."""


def can_move(status: str, to: str) -> bool:
    return to in TRANSITIONS.get(status, frozenset())


def allows(machine: Machine, action: str) -> bool:
    spec = ACTIONS[action]
    if action in _FROM and machine.status not in _FROM[action]:
        return False
    return can_move(machine.status, spec.to)


def actions_for(machine: Machine) -> list[Action]:
    """The actions the table allows from the machine's status, in the order people expect them."""
    return [spec for name, spec in ACTIONS.items() if allows(machine, name)]


def refusal(machine: Machine, action: str) -> str:
    offered = ", ".join(a.name for a in actions_for(machine)) or "nothing"
    return (
        f"{machine.hostname} is {machine.status}: {ACTIONS[action].label.lower()} is not possible from there. "
        f"It can: {offered}."
    )


def check(machine: Machine, action: str) -> None:
    if action not in ACTIONS:
        raise LifecycleRefused(f"“{action}” is not an action; the actions are: {', '.join(ACTIONS)}.")
    if not allows(machine, action):
        raise LifecycleRefused(refusal(machine, action))


def stale(machine: Machine, has_active_install: bool) -> bool:
    """A busy status no operation holds any more (its install ended without settling it, or data from before the
    lifecycle): any operation may take the machine from there."""
    return machine.status in BUSY and not has_active_install


def move(
    machine: Machine, to: str, actor: Actor, *, reason: str = "", cause: str = "", force: bool = False
) -> None:
    """Move ``machine`` (locked by the caller, inside its transaction) to ``to``, audited. ``cause`` says what
    moved it when it was not a person's action (e.g. "install 12 succeeded"); ``force`` leaves a stale busy
    status (see ``stale``), and is recorded."""
    frm = machine.status
    if to == frm:
        return
    if not can_move(frm, to) and not force:
        raise LifecycleRefused(f"{machine.hostname} cannot go from {frm} to {to}.")
    machine.status = to
    machine.status_reason = reason[:500] if to in (S.BROKEN, S.FAILED, S.MAINTENANCE) else ""
    machine.status_changed_at = timezone.now()
    machine.save(update_fields=["status", "status_reason", "status_changed_at"])
    details = {"from": frm, "to": to}
    if reason:
        details["reason"] = reason[:500]
    if cause:
        details["cause"] = cause
    if force and not can_move(frm, to):
        details["forced"] = f"{frm} was stale: no operation held the machine"
    record(actor, "machine.lifecycle", machine, details)


def mark(machine: Machine, action: str, actor: Actor, reason: str = "") -> None:
    """A person's action that only changes the status (mark broken or fixed, maintenance)."""
    spec = ACTIONS[action]
    if spec.operation:
        raise LifecycleRefused(f"{spec.label} runs an operation; request it, not a status change.")
    check(machine, action)
    if spec.needs_reason and not reason.strip():
        raise LifecycleRefused(f"{spec.label} needs a reason, for the audit log and the next technician.")
    move(machine, spec.to, actor, reason=reason.strip())
