"""The task registry: one plain function per task kind of the contract, `fn(ctx, params)`.

A task returns its output (a string), or a TaskResult when it must act after its result is delivered, and
fails by raising TaskFailed with a CamelCase reason.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

from provisioner.agent.context import Context
from provisioner.agent.results import TaskAborted, TaskFailed, TaskResult
from provisioner.agent.tasks.bmc import create_bmc_user
from provisioner.agent.tasks.boot import bootloader
from provisioner.agent.tasks.disks import partition, raid, wipe_disks
from provisioner.agent.tasks.erase import erase_disks
from provisioner.agent.tasks.firstboot import first_boot_callback
from provisioner.agent.tasks.grow import grow_root
from provisioner.agent.tasks.image import write_image
from provisioner.agent.tasks.system import commission, inventory, poweroff, reboot, run_script
from provisioner.agent.tasks.target import configure_network, set_hostname, ssh_keys

log = logging.getLogger(__name__)

TaskFunction = Callable[[Context, dict], "str | TaskResult | None"]

TASKS: dict[str, TaskFunction] = {
    "inventory": inventory,
    "commission": commission,
    "create_bmc_user": create_bmc_user,
    "wipe_disks": wipe_disks,
    "erase_disks": erase_disks,
    "raid": raid,
    "partition": partition,
    "write_image": write_image,
    "bootloader": bootloader,
    "grow_root": grow_root,
    "configure_network": configure_network,
    "set_hostname": set_hostname,
    "ssh_keys": ssh_keys,
    "run_script": run_script,
    "reboot": reboot,
    "poweroff": poweroff,
    "first_boot_callback": first_boot_callback,
}

# Kinds that are never started a second time for one task id, even after the agent restarts mid-task.
# bootloader writes the members' boot sectors.
DESTRUCTIVE = frozenset(
    {
        "wipe_disks", "erase_disks", "raid", "partition", "write_image", "grow_root", "bootloader", "run_script",
        "reboot", "poweroff",
    }
)  # fmt: skip


def run_task(ctx: Context, kind: str, params: object) -> TaskResult:
    """Run one task to its result; only TaskAborted (the install ended) escapes."""
    task = TASKS.get(kind)
    if task is None:
        return TaskResult.failed("UnknownTaskKind", f"this agent has no task {kind!r}")
    if not isinstance(params, dict):
        return TaskResult.failed("InvalidParams", "params must be a JSON object")
    try:
        outcome = task(ctx, params)
    except TaskAborted:
        raise
    except TaskFailed as exc:
        return TaskResult.failed(exc.reason, exc.message, exc.output, retryable=exc.retryable)
    except Exception as exc:
        # A bug or an unexpected OS error: the install fails with the evidence instead of the agent dying.
        log.exception("task %s crashed", kind)
        return TaskResult.failed("AgentError", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    if isinstance(outcome, TaskResult):
        return outcome
    return TaskResult(ok=True, output=outcome or "")
