"""Every kind of install step, described once.

A row of KINDS says which install phase a step belongs to, who moves it on (a worker runs it, the
machine's call ends its wait, or the agent pulls it), what a worker runs for it, how long the machine
gets and how the install fails when it takes longer, and what people see it called. The engine, the
callbacks, the sweeper and the pages read this table and nothing else about a kind. Which steps an
install has is its workflow's to say (installs/workflow.py, installs/taskkinds.py).

Adding a worker step is a row here, its runner function and a row of installs/taskkinds.py that lets
workflows name it (docs/design.md, "Adding a step").
The rows below name their runners by dotted path, as periodic jobs are named (installs/periodic.py):
the models read this table for a step's label and the runners use the models, so this module cannot
import them. A row made elsewhere (a test) may give the function itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.utils.module_loading import import_string

from inventory.models import InstallMethod

from .states import InstallState

if TYPE_CHECKING:
    from collections.abc import Callable


class StepKind(models.TextChoices):
    """What a Step row holds in ``kind``; a kind's choice label is what people see, unless its row says."""

    CHECK_BMC = "check_bmc", "Check the BMC"
    HARDWARE_RAID = "hardware_raid", "Build a hardware RAID volume"
    WRITE_BOOT_CONFIG = "write_boot_config", "Write the per-MAC boot config"
    INSERT_MEDIA = "insert_media", "Insert the virtual media ISO"
    SET_BOOT_PXE = "set_boot_pxe", "One-time boot from network"
    POWER_CYCLE = "power_cycle", "Power cycle"
    POWER_ON = "power_on", "Power on"
    POWER_OFF = "power_off", "Power off"
    SET_BOOT_DEVICE = "set_boot_device", "Set the boot device"
    WAIT_BOOT = "wait_boot", "Wait for the installer or agent to start"
    WAIT_INSTALLER = "wait_installer", "Installer running"
    AGENT_TASK = "agent_task", "Agent task"
    REMOVE_BOOT_CONFIG = "remove_boot_config", "Remove the per-MAC boot config"
    EJECT_MEDIA = "eject_media", "Eject the virtual media"
    SET_BOOT_DISK = "set_boot_disk", "Boot device: disk"
    REBOOT = "reboot", "Reboot into the installed OS"
    VERIFY = "verify", "Verify the installed OS"
    VERIFY_SSH = "verify_ssh", "Check the installed OS over SSH"


class Mover(StrEnum):
    """Who moves a step on."""

    WORKER = "worker"  # a worker job runs it: one short BMC call or file operation, then the next step
    WAIT = "wait"  # the machine's call ends it (installer callback, agent registration, first boot)
    AGENT = "agent"  # the agent asks for it as a task and reports its result


@dataclass(frozen=True)
class StepKindSpec:
    kind: str  # the value stored in Step.kind
    # The install's state while this step is current; None: whatever it is (a BMC call a workflow may
    # place in any phase).
    phase: InstallState | None
    mover: Mover
    # Worker steps: ``run(install, step) -> dict`` or its dotted path (installs/steps.py): one short call,
    # safe to run twice; it raises steps.StepFailed, or returns {"skipped": why} when there is nothing to do.
    runner: str | Callable[..., dict] = ""
    # Steps that wait for the machine: the setting that says how long (seconds), and how the install
    # fails when the wait is over. The message may use {host}, {minutes} and {task}.
    deadline_setting: str = ""
    timeout_reason: str = ""  # CamelCase
    timeout_message: str = ""
    # Install methods for which this worker step is a wait for the machine instead (its runner unused).
    waits_for: frozenset[str] = field(default_factory=frozenset)
    # What people see; blank means the kind's StepKind label. May use {task} (agent tasks).
    label: str = ""

    def __post_init__(self):
        if not self.label:
            if self.kind not in StepKind.values:
                raise ValueError(f"step kind {self.kind!r} is not a StepKind: give it a label")
            object.__setattr__(self, "label", StepKind(self.kind).label)
        if self.mover == Mover.WORKER and not self.runner:
            raise ValueError(f"worker step kind {self.kind!r} needs a runner")
        if (self.mover != Mover.WORKER or self.waits_for) and not (
            self.deadline_setting and self.timeout_reason and self.timeout_message
        ):
            raise ValueError(f"step kind {self.kind!r} waits for the machine: give its deadline and timeout failure")

    def mover_for(self, method: str) -> Mover:
        """Who moves this step on in an install of ``method``."""
        return Mover.WAIT if method in self.waits_for else self.mover

    def deadline_s(self, mover: Mover) -> float:
        """How long a step may stay started: a worker's run is bounded by one setting for every kind
        (the sweeper retries it when its worker died); the machine gets the kind's own deadline."""
        if mover == Mover.WORKER:
            return settings.STEP_RUN_TIMEOUT_S
        return getattr(settings, self.deadline_setting)

    def run(self, install, step) -> dict:
        run = import_string(self.runner) if isinstance(self.runner, str) else self.runner
        return run(install, step)

    def title(self, task: str = "") -> str:
        return self.label.format(task=task.replace("_", " "))

    def timeout(self, *, host: str, minutes: int | str, task: str = "") -> tuple[str, str]:
        """The reason and message an install fails with when this step's wait is over."""
        return self.timeout_reason, self.timeout_message.format(host=host, minutes=minutes, task=task.replace("_", " "))


# Which steps an install has, and in what order, is its workflow's to say (installs/workflow.py); a
# workflow names tasks (installs/taskkinds.py), each run as a step of one of these kinds.
KINDS: dict[str, StepKindSpec] = {
    spec.kind: spec
    for spec in (
        StepKindSpec(StepKind.CHECK_BMC, InstallState.PREPARING, Mover.WORKER, runner="installs.steps.check_bmc"),
        # Before the boot: the power cycle that boots the agent or installer is also the reset that makes a
        # controller build a volume requested for OnReset, and what boots then sees the volume as its disk.
        StepKindSpec(
            StepKind.HARDWARE_RAID, InstallState.PREPARING, Mover.WORKER, runner="installs.steps.hardware_raid"
        ),
        StepKindSpec(
            StepKind.WRITE_BOOT_CONFIG, InstallState.PREPARING, Mover.WORKER, runner="installs.steps.write_boot_config"
        ),
        # Virtual media stands in for the boot config where the network has no DHCP or PXE: the ISO carries
        # what the per-MAC config would, and the BMC fetches it by URL.
        StepKindSpec(StepKind.INSERT_MEDIA, InstallState.PREPARING, Mover.WORKER, runner="installs.steps.insert_media"),
        StepKindSpec(StepKind.SET_BOOT_PXE, InstallState.POWERING, Mover.WORKER, runner="installs.steps.set_boot_pxe"),
        StepKindSpec(StepKind.POWER_CYCLE, InstallState.POWERING, Mover.WORKER, runner="installs.steps.power_cycle"),
        # Only in workflows that name them: no stock workflow has these.
        StepKindSpec(StepKind.POWER_ON, None, Mover.WORKER, runner="installs.steps.power_on"),
        StepKindSpec(StepKind.POWER_OFF, None, Mover.WORKER, runner="installs.steps.power_off"),
        StepKindSpec(
            StepKind.SET_BOOT_DEVICE,
            None,
            Mover.WORKER,
            runner="installs.steps.set_boot_device",
        ),
        StepKindSpec(
            StepKind.WAIT_BOOT,
            InstallState.BOOTING,
            Mover.WAIT,
            deadline_setting="INSTALL_BOOT_DEADLINE_S",
            timeout_reason="BootTimeout",
            timeout_message=(
                "{host} did not start the installer or agent within {minutes} minutes of its power cycle. "
                "Check its console: does it PXE-boot from the right NIC, get a DHCP answer and fetch its boot config "
                "(or, booting virtual media, start from the virtual CD and reach the site's URL)?"
            ),
        ),
        StepKindSpec(
            StepKind.WAIT_INSTALLER,
            InstallState.INSTALLING,
            Mover.WAIT,
            deadline_setting="INSTALL_INSTALLER_DEADLINE_S",
            timeout_reason="InstallerTimeout",
            timeout_message=(
                "The installer on {host} did not report finishing within {minutes} minutes. "
                "Check its console or the log."
            ),
        ),
        StepKindSpec(
            StepKind.AGENT_TASK,  # one step per task of the plan (installs/plan.py agent_tasks)
            InstallState.INSTALLING,
            Mover.AGENT,
            deadline_setting="INSTALL_AGENT_TASK_DEADLINE_S",
            timeout_reason="AgentTaskTimeout",
            timeout_message="The agent's {task} on {host} did not finish within {minutes} minutes.",
            label="Agent: {task}",
        ),
        StepKindSpec(
            StepKind.REMOVE_BOOT_CONFIG,
            InstallState.FINALIZING,
            Mover.WORKER,
            runner="installs.steps.remove_boot_config",
        ),
        StepKindSpec(StepKind.EJECT_MEDIA, InstallState.FINALIZING, Mover.WORKER, runner="installs.steps.eject_media"),
        StepKindSpec(
            StepKind.SET_BOOT_DISK, InstallState.FINALIZING, Mover.WORKER, runner="installs.steps.set_boot_disk"
        ),
        StepKindSpec(
            StepKind.REBOOT,
            InstallState.FINALIZING,
            Mover.WORKER,
            runner="installs.steps.reboot",
        ),
        StepKindSpec(
            StepKind.VERIFY,
            InstallState.VERIFYING,
            # The BMC says the machine is on; an image's installed OS calls back at its first boot instead.
            Mover.WORKER,
            runner="installs.steps.verify",
            waits_for=frozenset({InstallMethod.IMAGE}),
            deadline_setting="INSTALL_VERIFY_DEADLINE_S",
            timeout_reason="InstalledOSSilent",
            timeout_message=(
                "{host} did not call back from its installed OS within {minutes} minutes of rebooting. "
                "Check its console: it may be booting another disk or stuck at the firmware."
            ),
        ),
        # Through the site's jump host when one is configured; skipped with the reason otherwise.
        StepKindSpec(StepKind.VERIFY_SSH, InstallState.VERIFYING, Mover.WORKER, runner="installs.steps.verify_ssh"),
    )
}


def spec(kind: str) -> StepKindSpec:
    return KINDS[kind]
