"""What machines tell us: installer callbacks and the agent's calls, as service functions.

The HTTP layer (installs/api.py) authenticates the token (installs/credentials.py) and validates
bodies; these functions move the install through the same engine as everything else, so a late or
repeated call is harmless.
"""

from __future__ import annotations

import time

from django.db import transaction
from django.utils import timezone

from audit.service import Actor, record
from core.redaction import redact_text
from inventory.models import BootMode, Machine

from . import commissioning, credentials, engine, resolve
from .events import emit
from .models import EventKind, Install, Step
from .progress import parse_task_id
from .states import ACTIVE_STATES, STEP_DONE_STATES, StepState
from .stepkinds import StepKind

INSTALLER_EVENT_KINDS = ("started", "progress", "finished", "failed")
# What a failed installer's "log" field keeps: the tail of its syslog, which the stock kickstart %onerror and
# autoinstall error-commands send. Enough to show the error and what led to it; bounded whatever is sent.
INSTALLER_TAIL_LINES = 50
INSTALLER_TAIL_BYTES = 8 * 1024


def installer_tail(log) -> list[str]:
    """The last lines of the log a failed installer sent, bounded in lines and bytes, blank lines dropped."""
    if not isinstance(log, str) or not log.strip():
        return []
    text = log.encode()[-INSTALLER_TAIL_BYTES:].decode(errors="ignore")
    # An installer's syslog names the URLs it fetched, boot credential and all.
    lines = [redact_text(line.rstrip()) for line in text.replace("\r", "").split("\n") if line.strip()]
    return lines[-INSTALLER_TAIL_LINES:]


def agent_actor(install: Install) -> Actor:
    return Actor.agent(f"agent:{install.machine.hostname}")


@transaction.atomic
def installer_event(install_id: int, kind: str, message: str = "", data: dict | None = None) -> str:
    """An installer (or the installed OS at first boot) calls back: started, progress, finished, failed."""
    install = engine.lock(install_id)
    if install.state not in ACTIVE_STATES:
        return "ended"
    data = data or {}
    if kind == "started":
        done = engine.complete_wait(install, (StepKind.WAIT_BOOT,), "the installer started")
        return "booted" if done else "duplicate"
    if kind == "progress":
        if message or data:
            emit(install, EventKind.PROGRESS, message[:2000], data=data)
        return "noted"
    if kind == "finished":
        engine.complete_wait(install, (StepKind.WAIT_BOOT,), "the installer started")
        done = engine.complete_wait(install, (StepKind.WAIT_INSTALLER, StepKind.VERIFY), message or "reported finished")
        return "finished" if done else "duplicate"
    if kind == "failed":
        tail = installer_tail(data.get("log"))
        for line in tail:
            emit(install, EventKind.LOG, f"installer: {line}")
        step = engine.current_step(install)
        if step is not None and tail:
            step.result = {**step.result, "installer_log": tail}
        engine.fail(
            install,
            "InstallerFailed",
            "The installer reported a failure"
            + (f": {message.rstrip('.')}." if message else ".")
            + (
                f" Its last {len(tail)} log line(s) are below and in the install log."
                if tail
                else " It sent no log lines: look at the machine's console."
            ),
            step=step,
        )
        return "failed"
    raise ValueError(f"unknown installer event {kind!r}")


class WrongMachine(Exception):
    pass


class InstallEnded(Exception):
    """The install ended between the token's check and the registration."""


def agent_register(install_id: int, facts: dict, *, boot_credential: bool = False, key: str = ""):
    """The agent says hello with the machine's hardware facts. If none of its MACs is the machine's PXE
    NIC, it booted somewhere else: refuse it and fail the install, touching nothing.

    With the boot credential (``boot_credential``), this is its one use: the answer hands over the agent
    and callback tokens (credentials.Handover), and ``key`` lets the same agent ask again for an answer
    it lost. With the agent token (an agent restarted in the same memory OS) nothing is handed: None."""
    handover, refused = _register(install_id, facts, boot_credential, key)
    if refused:
        raise refused  # after the commit: the failure must stick
    return handover


@transaction.atomic
def _register(install_id: int, facts: dict, boot_credential: bool, key: str):
    install = engine.lock(install_id)
    if install.state not in ACTIVE_STATES:
        return None, InstallEnded()
    handover = None
    if boot_credential and install.boot_token_spent_at is not None:  # a second use, or the agent asking again
        handover, reused = credentials.exchange_for_agent(install, key)
        if reused:
            return None, reused
    expected = install.plan.machine.mac
    macs = {str(n.get("mac", "")).lower() for n in facts.get("nics", [])}
    actor = agent_actor(install)
    if expected not in macs:
        message = f"booted on a machine that is not {install.machine.hostname}"
        record(actor, "agent.refused", install, {"reason": "WrongMachine", "reported_macs": sorted(macs)})
        engine.fail(
            install,
            "WrongMachine",
            f"The agent {message} (its MACs: {', '.join(sorted(macs)) or 'none'}; expected {expected}). "
            "Check the PXE NIC's MAC in inventory and the cabling; nothing was written to any disk.",
            step=engine.current_step(install),
        )
        return None, WrongMachine(message)
    if boot_credential and handover is None:  # the first use: the boot credential is spent here
        handover, _ = credentials.exchange_for_agent(install, key)
    now = timezone.now()
    install.agent_seen_at = now
    install.save(update_fields=["agent_seen_at"])
    learned = {}
    if isinstance(facts.get("efi"), bool):
        # The memory OS booted the way the firmware does: what every later boot-device request asks for.
        learned["boot_mode"] = BootMode.UEFI if facts["efi"] else BootMode.LEGACY
    Machine.objects.filter(pk=install.machine_id).update(facts=facts, **learned)
    record(actor, "agent.register", install, {"macs": sorted(macs)})
    engine.complete_wait(install, (StepKind.WAIT_BOOT,), "the agent registered")
    return handover, None


def agent_heartbeat(install: Install) -> bool:
    """Returns whether the agent should stop (the install is no longer active)."""
    Install.objects.filter(pk=install.pk).update(agent_seen_at=timezone.now())
    return install.state not in ACTIVE_STATES


def _task_id(step: Step) -> str:
    return f"{step.pk}.{step.attempts}"


def resolve_params(install: Install, step: Step) -> dict:
    """The params the agent gets for ``step``, from the facts the machine registered with."""
    if step.attempts:
        # A retry: dispatch stored the resolved params in place of the workflow's, and resolving those again
        # is not the same (a script's body is already under "script"). The retry runs what the first got.
        return dict(step.params)
    return resolve.task_params(install.plan, install.machine.hostname, install.machine.facts or {}, step.task,
                               step.params)  # fmt: skip


def _handout(install: Install, step: Step) -> dict:
    """The task as the agent gets it: the step's params, and a secret some tasks need that the step never keeps."""
    params = dict(step.params)
    params.update(commissioning.secret_params(install, step))
    return {"id": _task_id(step), "kind": step.task, "params": params}


def _refused_as_protected(install: Install, step: Step) -> str:
    if (step.policy or {}).get("destructive") and install.machine.protected:
        return (
            f"{install.machine.hostname} was marked protected during the install: the agent's "
            f"{step.task.replace('_', ' ')} destroys data and was refused. Unprotect it with a reason and retry if "
            "this install is intended."
        )
    return ""


@transaction.atomic
def agent_next_task(install_id: int) -> dict:
    """What the agent should do now: {"task": {...}}, {"task": None, "retry_after_s": n}, or
    {"task": None, "finished": True} when its part of the plan is over. In a parallel stage each call hands
    out another of the stage's tasks while the earlier ones run."""
    install = engine.lock(install_id)
    Install.objects.filter(pk=install.pk).update(agent_seen_at=timezone.now())
    steps = engine.current_steps(install)
    if not steps or install.state not in ACTIVE_STATES:
        return {"task": None, "finished": True}
    agent_steps = [s for s in steps if s.kind == StepKind.AGENT_TASK]
    now = timezone.now()
    ready = [s for s in agent_steps if s.state == StepState.PENDING and not (s.not_before and s.not_before > now)]
    if ready:
        step = ready[0]
        refusal = _refused_as_protected(install, step)
        if refusal:
            engine.fail(install, "MachineProtected", refusal, step=step, actor=agent_actor(install))
            return {"task": None, "finished": True}
        skip = commissioning.skip_reason(install, step)
        if skip:
            engine.skip_step(install, step, skip)
            return {"task": None, "retry_after_s": 1}
        try:
            params = resolve_params(install, step)
        except resolve.ParamsUnusable as exc:
            outcome = engine.fail_or_continue(install, step, exc.reason, exc.message)
            return {"task": None, "finished": True} if outcome == "failed" else {"task": None, "retry_after_s": 1}
        engine.dispatch(install, step, params)
        return {"task": _handout(install, step)}
    waiting = [s for s in agent_steps if s.state == StepState.PENDING]
    if waiting:  # a retry's backoff
        wait = min((s.not_before - now).total_seconds() for s in waiting)
        return {"task": None, "retry_after_s": round(max(0.5, min(wait, 30)), 1)}
    out = [s for s in agent_steps if s.state == StepState.DISPATCHED]
    if out:
        # Handed out before: again, so that an answer lost on the way is not lost for good (the agent never
        # runs one task id twice). A parallel stage's, in turn.
        step = out[int(time.monotonic() / 2) % len(out)]
        return {"task": _handout(install, step)}
    later = install.steps.filter(kind=StepKind.AGENT_TASK, order__gt=steps[-1].order).exists()
    return {"task": None, "retry_after_s": 2} if later else {"task": None, "finished": True}


class UnknownTask(Exception):
    pass


class NotCurrentTask(Exception):
    pass


def _dispatched(install: Install, task_id: str) -> Step:
    parsed = parse_task_id(task_id)
    if parsed is None:
        raise UnknownTask(task_id)
    step = install.steps.filter(pk=parsed[0], kind=StepKind.AGENT_TASK).first()
    if step is None:
        raise UnknownTask(task_id)
    if step.attempts != parsed[1]:
        raise NotCurrentTask(task_id)
    return step


@transaction.atomic
def agent_result(
    install_id: int, task_id: str, ok: bool, reason: str, message: str, output: str, retryable: bool = False
) -> str:
    install = engine.lock(install_id)
    step = _dispatched(install, task_id)
    if step.state in STEP_DONE_STATES:
        return "duplicate"
    if step.state != StepState.DISPATCHED:
        raise NotCurrentTask(task_id)
    if (
        output
        and not (ok and step.task in commissioning.RESULT_TASKS)
        and not install.events.filter(step=step, kind=EventKind.LOG).exists()
    ):
        # The task's output, unless its lines already came, streamed with its progress (a script's do).
        emit(install, EventKind.LOG, output[-10000:], step=step, data={"output": True})
    if ok:
        try:
            summary = commissioning.take_result(install, step, output, agent_actor(install))
        except commissioning.ResultUnusable as exc:
            return engine.fail_or_continue(install, step, exc.reason, exc.message, actor=agent_actor(install))
        if summary is not None:
            emit(install, EventKind.LOG, summary, step=step)
            output = summary
        engine.complete_task(install, step, {"output_tail": output[-2000:]}, message)
        return "ok"
    text = f"The agent's {step.task.replace('_', ' ')} failed" + (f": {message}" if message else ".")
    if retryable and step.attempts < engine.attempts_allowed(step):
        engine.retry_later(install, step, text, reason or "AgentTaskFailed")
        return "retry"
    if retryable and step.attempts > 1:
        text += f" Gave up after {step.attempts} attempts."
    return engine.fail_or_continue(install, step, reason or "AgentTaskFailed", text, actor=agent_actor(install))
