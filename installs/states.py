"""The states of an install and of its steps, and the moves between them, as data.

installs/engine.py is the only writer: ``set_state`` checks TRANSITIONS, ``move_step`` checks
STEP_TRANSITIONS. No model lives here, so the step kinds table (installs/stepkinds.py), which the
models read for a step's label, can name the phases without importing the models.
"""

from django.db import models


class InstallState(models.TextChoices):
    QUEUED = "queued"  # accepted, waiting for a slot in its batch (site/rack caps) or its first job
    PREPARING = "preparing"  # checking the BMC and writing the per-MAC boot config
    POWERING = "powering"  # one-time network boot set, power cycle sent
    BOOTING = "booting"  # wait: the machine is booting the installer or memory OS (deadline)
    INSTALLING = "installing"  # wait: the installer runs, or the agent works through its tasks (deadline)
    FINALIZING = "finalizing"  # per-MAC config removed, boot device set to disk, reboot if needed
    VERIFYING = "verifying"  # wait: for proof the installed OS is up (deadline)
    SUCCEEDED = "succeeded"  # done: the machine runs its new OS
    FAILED = "failed"  # stopped on an error; failure_reason and failure_message say which
    CANCELLED = "cancelled"  # stopped by a person; cancelled_by and failure_message say who and why


# The forward path of an install, in order; every state but the last is active.
_PHASES = [
    InstallState.QUEUED,
    InstallState.PREPARING,
    InstallState.POWERING,
    InstallState.BOOTING,
    InstallState.INSTALLING,
    InstallState.FINALIZING,
    InstallState.VERIFYING,
    InstallState.SUCCEEDED,
]
ACTIVE_STATES = frozenset(_PHASES[:-1])
TERMINAL_STATES = frozenset({InstallState.SUCCEEDED, InstallState.FAILED, InstallState.CANCELLED})

# The install's state machine: from each state, where an install may go next.
TRANSITIONS: dict[str, frozenset[str]] = {
    state: frozenset(
        # forward to any later phase (a plan may have no step in some phase), or stop
        {*_PHASES[i + 1 :], InstallState.FAILED, InstallState.CANCELLED}
    )
    for i, state in enumerate(_PHASES[:-1])
}
TRANSITIONS.update({state: frozenset() for state in TERMINAL_STATES})


class StepState(models.TextChoices):
    PENDING = "pending"  # not started (or waiting for its retry time, see not_before)
    RUNNING = "running"  # a worker runs it now (or died running it: deadline_at tells)
    WAITING = "waiting"  # waits for the machine: an installer callback or the agent (deadline_at)
    DISPATCHED = "dispatched"  # an agent task handed to the agent, not yet reported done
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run because the install ended first, or its runner found nothing to do


STEP_DONE_STATES = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED})
# Started and not yet done: the step carries a deadline (installs/stepkinds.py says how long).
STEP_STARTED_STATES = frozenset({StepState.RUNNING, StepState.WAITING, StepState.DISPATCHED})

# Each step's state machine: from each state, where a step may go next. Any step not yet done may
# fail (the install failed while it was current) or be skipped (the install ended first).
STEP_TRANSITIONS: dict[str, frozenset[str]] = {
    # claimed by a worker, its wait begun, handed to the agent; or answered before its wait began
    StepState.PENDING: frozenset(
        {
            StepState.RUNNING,
            StepState.WAITING,
            StepState.DISPATCHED,
            StepState.SUCCEEDED,
            StepState.FAILED,
            StepState.SKIPPED,
        }
    ),
    # back to pending: a retry after a retryable error, a lost worker, or a job's step limit
    StepState.RUNNING: frozenset({StepState.PENDING, StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED}),
    StepState.WAITING: frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED}),
    # back to pending: the agent reported a transient failure and the task's policy retries it (a new task id)
    StepState.DISPATCHED: frozenset({StepState.PENDING, StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED}),
    **{state: frozenset() for state in STEP_DONE_STATES},
}
