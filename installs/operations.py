"""Asking for a lifecycle operation on machines: commission, test, deploy or release. The pages, the REST API and
``manage.py machine`` all come here; each operation is an install of a workflow of its purpose (deploy: the
profile's; the others: their stock workflow or one of the library, on the site's memory OS), so it has the
install's steps, retries, deadlines, live progress, cleanup and audit."""

from __future__ import annotations

from audit.service import Actor
from inventory.models import OSProfile

from .batches import InstallRefused, request_installs
from .library import Operation
from .models import Batch, Purpose

ACTIONS = tuple(Purpose.values)
MAX_CPU_BURN_S = 7 * 86400


def request(
    machine_ids: list[int],
    action: str,
    actor: Actor,
    *,
    profile: OSProfile | None = None,
    workflow: str = "",
    options: dict | None = None,
    name: str = "",
    boot: str = "",
) -> Batch:
    """One batch running ``action`` on the machines, or InstallRefused (args[0]: the problems, in words).
    ``options``: test's ``cpu_burn_s`` (the stock CPU burn's seconds) and ``nic_speed_mbps`` (the speed the
    stock NIC test expects)."""
    options = dict(options or {})
    if action not in ACTIONS:
        raise InstallRefused([f"“{action}” is not an operation; the operations are: {', '.join(ACTIONS)}."])
    if action == Purpose.DEPLOY:
        if profile is None:
            raise InstallRefused(["A deploy needs the OS profile to install."])
        if workflow:
            raise InstallRefused(["A deploy runs its profile's workflow; give the profile, not a workflow."])
        return request_installs(machine_ids, profile, actor, name=name, boot=boot)
    problems = []
    numbers = {}
    for key, top in (("cpu_burn_s", MAX_CPU_BURN_S), ("nic_speed_mbps", 10_000_000)):
        value = options.pop(key, None)
        if value in (None, ""):
            continue
        if action != Purpose.TEST:
            problems.append(f"{key} is an option of hardware tests, not of {action}.")
            continue
        try:
            numbers[key] = int(value)
        except (TypeError, ValueError):
            problems.append(f"{key}: {value!r} is not a whole number.")
            continue
        if not 0 <= numbers[key] <= top:
            problems.append(f"{key}: {value} is outside 0–{top}.")
    if options:
        problems.append(f"Unknown options: {', '.join(sorted(options))}.")
    if problems:
        raise InstallRefused(problems)
    operation = Operation(action, workflow=workflow, **numbers)
    return request_installs(machine_ids, None, actor, name=name, boot=boot, operation=operation)
