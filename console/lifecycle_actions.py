"""A person's lifecycle action on machines, the one way in for the machine page, the list's bulk form, the REST
API and ``manage.py machine``: what the action takes is checked here, in words that name the field, before
anything is written; the table (inventory/lifecycle.py) says whether it may happen from where each machine is.

An operation (commission, test, deploy, release) is requested from installs.operations, which runs it as an
install and refuses, audited, what protection or another install forbids. A status change (mark broken or fixed,
maintenance) is made here: the machine locked, the table checked again, the move audited with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from audit.service import Actor
from core.edge import int_param
from installs import operations
from installs.batches import InstallRefused
from installs.library import BOOTS
from installs.models import Batch, Workflow
from inventory import lifecycle
from inventory.lifecycle import ACTIONS, LifecycleRefused
from inventory.models import Machine, OSProfile

OPERATIONS = frozenset(name for name, spec in ACTIONS.items() if spec.operation)
# What hardware tests run unless a workflow of the library is chosen.
STOCK_TEST_WORKFLOW = "stock-test"
# A CPU burn-in longer than a day is a typo (the test's install would wait for it).
CPU_BURN_MAX_S = 86_400
REASON_MAX = 500


class Invalid(ValueError):
    """What was sent cannot be an action (a 400): ``field`` names the part at fault."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class Refused(Exception):
    """The action may not happen now (a 409): ``problems`` says why, one sentence per machine or cause."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))


@dataclass(frozen=True)
class Request:
    action: str
    reason: str = ""
    profile: OSProfile | None = None
    workflow: str = ""
    cpu_burn_s: int | None = None
    boot: str = ""

    @property
    def spec(self) -> lifecycle.Action:
        return ACTIONS[self.action]

    @property
    def is_operation(self) -> bool:
        return self.action in OPERATIONS

    def options(self) -> dict:
        """What the operation's install is asked to do differently from its stock workflow."""
        if self.action == "test" and self.cpu_burn_s is not None:
            return {"cpu_burn_s": self.cpu_burn_s}
        if self.action == "deploy" and self.boot:
            return {"boot": self.boot}
        return {}


def hardware_test_workflows() -> list[str]:
    """The workflows a hardware test may run: the stock one, then the library's."""
    names = Workflow.objects.order_by("name").values_list("name", flat=True).distinct()
    return [STOCK_TEST_WORKFLOW, *(n for n in names if n != STOCK_TEST_WORKFLOW)]


def parse(
    action: str,
    *,
    reason: str = "",
    profile: str = "",
    workflow: str = "",
    cpu_burn_s: int | str | None = None,
    boot: str = "",
) -> Request:
    """The action and what it takes, or Invalid naming the first field at fault. A field the action does not
    take is refused too: a script sending a profile with "release" has misunderstood something."""
    if action not in ACTIONS:
        raise Invalid("action", f"“{action}” is not an action; the actions are {', '.join(ACTIONS)}.")
    spec = ACTIONS[action]
    reason = (reason or "").strip()
    if reason and spec.operation:
        raise Invalid("reason", f"{spec.label} takes no reason: its install records who asked and what happened.")
    if len(reason) > REASON_MAX:
        raise Invalid("reason", f"is {len(reason)} characters long; keep it to {REASON_MAX}.")
    if spec.needs_reason and not reason:
        raise Invalid("reason", f"{spec.label} needs a reason, for the audit log and the next technician.")
    _only(action, "deploy", "profile", profile)
    _only(action, "deploy", "boot", boot)
    _only(action, "test", "workflow", workflow)
    _only(action, "test", "cpu_burn_s", "" if cpu_burn_s is None else str(cpu_burn_s))
    return Request(
        action,
        reason=reason,
        profile=_profile(profile) if action == "deploy" else None,
        workflow=_workflow(workflow) if action == "test" else "",
        cpu_burn_s=_burn(cpu_burn_s),
        boot=_boot(boot),
    )


_IN_WORDS = {"profile": "a profile", "boot": "a boot choice", "workflow": "a workflow", "cpu_burn_s": "a CPU burn"}


def _only(action: str, takes: str, field: str, value: str) -> None:
    if value and action != takes:
        raise Invalid(field, f"only {takes} takes {_IN_WORDS[field]}, not {action}.")


def _profile(name: str) -> OSProfile:
    if not name:
        raise Invalid("profile", "Deploy needs the profile to install.")
    found = OSProfile.objects.filter(name=name).first()
    if found is None:
        known = ", ".join(OSProfile.objects.order_by("name").values_list("name", flat=True)[:30]) or "none"
        raise Invalid("profile", f"there is no profile “{name}”; the profiles are {known}.")
    return found


def _workflow(name: str) -> str:
    if not name or name == STOCK_TEST_WORKFLOW:
        return STOCK_TEST_WORKFLOW
    if not Workflow.objects.filter(name=name).exists():
        known = ", ".join(hardware_test_workflows())
        raise Invalid("workflow", f"there is no workflow “{name}”; the tests can run {known}.")
    return name


def _burn(value: int | str | None) -> int | None:
    if value is None or value == "":
        return None
    number = value if isinstance(value, int) and not isinstance(value, bool) else int_param(str(value).strip())
    if number is None or not 0 <= number <= CPU_BURN_MAX_S:
        raise Invalid("cpu_burn_s", f"“{value}” is not a number of seconds from 0 to {CPU_BURN_MAX_S}.")
    return number


def _boot(value: str) -> str:
    if value not in BOOTS:
        raise Invalid("boot", f"“{value}” is not a way to boot; choose {', '.join(b for b in BOOTS if b)}.")
    return value


def request_operation(machines: list[Machine], req: Request, actor: Actor, *, name: str = "") -> Batch:
    """Request the operation on the machines as one batch; Refused with every reason when the table refuses it
    for any of them (nothing is requested then), or when the install request refuses it."""
    problems = [lifecycle.refusal(m, req.action) for m in machines if not lifecycle.allows(m, req.action)]
    if problems:
        raise Refused(problems)
    try:
        return operations.request(
            [m.pk for m in machines],
            req.action,
            actor,
            profile=req.profile,
            workflow=req.workflow,
            options=req.options(),
            name=name,
        )
    except InstallRefused as exc:
        raise Refused(list(exc.args[0])) from None


def mark(machine_id: int, req: Request, actor: Actor) -> Machine:
    """Change the machine's status as the action says, audited with the reason; Refused when the table does
    not allow it from where the machine is now."""
    try:
        return _mark(machine_id, req, actor)
    except LifecycleRefused as exc:
        raise Refused([str(exc)]) from None


@transaction.atomic(durable=True)
def _mark(machine_id: int, req: Request, actor: Actor) -> Machine:
    machine = Machine.objects.select_for_update().get(pk=machine_id)
    lifecycle.mark(machine, req.action, actor, req.reason)
    return machine
