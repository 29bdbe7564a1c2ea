"""Machines that answer at once, through the same service functions the HTTP endpoints call: the agent registers
as soon as its install waits for the boot and runs each task it is handed, the installed OS calls back at first
boot. For tests and benches that run real workers without a datacentre (tests/integration, bench/)."""

from __future__ import annotations

from installs import callbacks
from installs.models import Step, StepKind, StepState


def answer_waiting(limit: int = 500, **install_filter) -> int:
    """Answer every install waiting for its machine (narrowed by ``install_filter``, e.g. plan__site__slug=...).
    Returns how many calls the machines made."""
    calls = 0
    waiting = Step.objects.filter(
        state=StepState.WAITING,
        install__state__in=["booting", "verifying"],
        **{f"install__{k}": v for k, v in install_filter.items()},
    ).values_list("install_id", "kind", "install__plan__machine__mac")[:limit]
    for install_id, kind, mac in list(waiting):
        if kind == StepKind.WAIT_BOOT:
            callbacks.agent_register(install_id, {"nics": [{"mac": mac}], "disks": [{"path": "/dev/sda"}]})
            while task := callbacks.agent_next_task(install_id)["task"]:
                callbacks.agent_result(install_id, task["id"], True, "", "", "")
                calls += 2
        elif kind == StepKind.VERIFY:
            callbacks.installer_event(install_id, "finished", "first boot")
        calls += 1
    return calls
