"""A person's lifecycle action on machines, the one way in for the machine page, the list's bulk form, the REST
API and ``manage.py machine``: what the action takes is checked here, in words that name the field, before
anything is written; the table (inventory/lifecycle.py) says whether it may happen from where each machine is.

An operation (commission, test, deploy, release) is requested from installs.operations, which runs it as an
install and refuses, audited, what the table, protection or another install forbids (a busy status no install
holds any more is stale: any operation may take the machine from there). A status change (mark broken or fixed,
maintenance) is made here: the machine locked, the table checked, the move audited with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml
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
CPU_BURN_MAX_S = operations.MAX_CPU_BURN_S
NIC_SPEED_MAX_MBPS = 10_000_000
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
    nic_speed_mbps: int | None = None
    boot: str = ""

    @property
    def spec(self) -> lifecycle.Action:
        return ACTIONS[self.action]

    @property
    def is_operation(self) -> bool:
        return self.action in OPERATIONS

    def options(self) -> dict:
        """What a test's scripts are told (installs/operations.py): the CPU burn and the NIC speed expected."""
        given = {"cpu_burn_s": self.cpu_burn_s, "nic_speed_mbps": self.nic_speed_mbps}
        return {key: value for key, value in given.items() if value is not None}


def hardware_test_workflows() -> list[str]:
    """The workflows a hardware test may run: the stock one, then the library's whose purpose is test (the
    latest version of each says)."""
    latest = {}
    for name, document in Workflow.objects.order_by("name", "-version").values_list("name", "document"):
        latest.setdefault(name, document)
    return [STOCK_TEST_WORKFLOW, *(name for name, document in latest.items() if _purpose(document) == "test")]


def _purpose(document: str) -> str:
    """A saved workflow's purpose (it was checked when saved; deploy when it says none)."""
    try:
        data = yaml.safe_load(document)
    except yaml.YAMLError:
        return ""
    return str(data.get("purpose", "deploy")) if isinstance(data, dict) else ""


def offered(machine: Machine, has_active_install: bool) -> list[lifecycle.Action]:
    """What a person may do with the machine now: what the table allows from its status and, when that status is
    a busy one no install holds any more (stale), any operation, as installs.operations takes it."""
    allowed = lifecycle.actions_for(machine)
    if not lifecycle.stale(machine, has_active_install):
        return allowed
    names = {a.name for a in allowed}
    return [spec for name, spec in ACTIONS.items() if name in names or spec.operation]


def parse(
    action: str,
    *,
    reason: str = "",
    profile: str = "",
    workflow: str = "",
    cpu_burn_s: int | str | None = None,
    nic_speed_mbps: int | str | None = None,
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
    _only(action, "test", "nic_speed_mbps", "" if nic_speed_mbps is None else str(nic_speed_mbps))
    return Request(
        action,
        reason=reason,
        profile=_profile(profile) if action == "deploy" else None,
        workflow=_workflow(workflow) if action == "test" else "",
        cpu_burn_s=_whole("cpu_burn_s", cpu_burn_s, CPU_BURN_MAX_S, "a number of seconds"),
        nic_speed_mbps=_whole("nic_speed_mbps", nic_speed_mbps, NIC_SPEED_MAX_MBPS, "a speed in Mb/s"),
        boot=_boot(boot),
    )


_IN_WORDS = {"profile": "a profile", "boot": "a boot choice", "workflow": "a workflow", "cpu_burn_s": "a CPU burn",
             "nic_speed_mbps": "an expected NIC speed"}  # fmt: skip


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
    known = hardware_test_workflows()
    if name not in known:
        raise Invalid("workflow", f"there is no test workflow “{name}”; the tests can run {', '.join(known)}.")
    return name


def _whole(field: str, value: int | str | None, maximum: int, what: str) -> int | None:
    if value is None or value == "":
        return None
    number = value if isinstance(value, int) and not isinstance(value, bool) else int_param(str(value).strip())
    if number is None or not 0 <= number <= maximum:
        raise Invalid(field, f"“{value}” is not {what} from 0 to {maximum}.")
    return number


def _boot(value: str) -> str:
    if value not in BOOTS:
        raise Invalid("boot", f"“{value}” is not a way to boot; choose {', '.join(b for b in BOOTS if b)}.")
    return value


def request_operation(machines: list[Machine], req: Request, actor: Actor, *, name: str = "") -> Batch:
    """Request the operation on the machines as one batch, or Refused with every reason (the table, protection,
    another install, a plan that cannot be made) when the request refuses any of them: then none is requested,
    and the refusal is audited."""
    try:
        return operations.request(
            [m.pk for m in machines],
            req.action,
            actor,
            profile=req.profile,
            workflow=req.workflow if req.workflow != STOCK_TEST_WORKFLOW else "",
            options=req.options(),
            name=name,
            boot=req.boot,
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
