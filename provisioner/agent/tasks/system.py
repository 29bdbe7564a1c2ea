"""Tasks about the memory OS itself: inventory, commission, run_script, reboot, poweroff."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import provisioner.agent.tasks.params as p
from provisioner.agent.context import Context
from provisioner.agent.results import OUTPUT_TAIL_CHARS, TaskFailed, TaskResult
from provisioner.agent.tools import tool_env

# How long commissioning listens for LLDP by default: switches announce every 30 s unless told otherwise.
DEFAULT_LLDP_S = 30
MAX_LLDP_S = 300
# PCI classes left out first when the facts would not fit in a result: host and PCI bridges (06), system
# peripherals (08, the dozens of uncore functions of each Xeon socket) and signal processing counters (11).
_MINOR_PCI_CLASSES = ("06", "08", "11")
# run_script's arguments: enough for any test script's options, few and short enough to bound a task's params.
MAX_SCRIPT_ARGS = 32
MAX_SCRIPT_ARG_CHARS = 1024
# Between SIGTERM and SIGKILL for a script past its timeout.
KILL_GRACE_S = 5
SCRIPT_TAIL_LINES = 200


def inventory(ctx: Context, params: dict) -> str:
    facts = ctx.host.facts()
    ctx.progress(100, f"{len(facts['disks'])} disk(s), {len(facts['nics'])} NIC(s)")
    return json.dumps(facts, sort_keys=True, separators=(",", ":"))


def commission(ctx: Context, params: dict) -> str:
    """The full facts (facts.collect_full) as JSON: what the machine is, down to its DIMMs and switch ports."""
    lldp_s = p.number(params, "lldp_s", default=DEFAULT_LLDP_S)
    if lldp_s > MAX_LLDP_S:
        raise p.invalid("lldp_s", f"at most {MAX_LLDP_S} seconds")
    ctx.progress(5, f"reading the hardware; listening for LLDP for up to {lldp_s:g} s")
    found = ctx.host.facts_full(lldp_s)
    for note in found["notes"]:
        ctx.log(note)
    heard = sum(1 for nic in found["nics"] if nic.get("lldp"))
    ctx.progress(
        100,
        f"{len(found['disks'])} disk(s), {len(found['nics'])} NIC(s) ({heard} with an LLDP neighbour), "
        f"{len(found['memory_modules'])} memory module(s), {len(found['pci'])} PCI function(s)",
    )
    return fit_facts(found)


def fit_facts(found: dict, limit: int = OUTPUT_TAIL_CHARS) -> str:
    """The facts as one line of JSON that fits in a task result: when it would not, the PCI functions least
    useful to a technician go first, then the whole PCI list, each with a note."""
    text = json.dumps(found, sort_keys=True, separators=(",", ":"))
    if len(text) <= limit:
        return text
    kept = [d for d in found["pci"] if not str(d.get("class", "")).startswith(_MINOR_PCI_CLASSES)]
    note = f"{len(found['pci']) - len(kept)} PCI bridges and system peripherals left out so the facts fit"
    found = {**found, "pci": kept, "notes": [*found["notes"], note]}
    text = json.dumps(found, sort_keys=True, separators=(",", ":"))
    if len(text) <= limit:
        return text
    found = {**found, "pci": [], "notes": [*found["notes"], "the PCI list left out so the facts fit"]}
    return json.dumps(found, sort_keys=True, separators=(",", ":"))


def _script_env(ctx: Context) -> dict[str, str]:
    # The install token never reaches a script (tool_env drops PROVISIONER_*): scripts come from profiles that
    # more people can edit.
    env = tool_env()
    if ctx.host.sandbox:
        env["PROVISIONER_SANDBOX"] = str(ctx.host.target_root().parent)
    return env


def run_script(ctx: Context, params: dict) -> str:
    script = params.get("script")
    if not isinstance(script, str) or not script.strip():
        raise p.invalid("script", "a non-empty string is required")
    timeout = p.number(params, "timeout_s", default=600, minimum=0.1)
    args = _script_args(params)
    if not script.startswith("#!"):
        script = "#!/bin/sh\n" + script
    workdir = tempfile.mkdtemp(prefix="provisioner-script-")
    try:
        path = os.path.join(workdir, "script")
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, 0o700)
        return _run_script(ctx, [path, *args], workdir, timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _script_args(params: dict) -> list[str]:
    """The arguments after the script's path (its $1, $2, ...): a list of at most MAX_SCRIPT_ARGS strings."""
    args = params.get("args", [])
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise p.invalid("args", "a list of strings is required")
    if len(args) > MAX_SCRIPT_ARGS:
        raise p.invalid("args", f"at most {MAX_SCRIPT_ARGS} arguments are allowed, not {len(args)}")
    for i, arg in enumerate(args):
        if len(arg) > MAX_SCRIPT_ARG_CHARS:
            raise p.invalid("args", f"argument {i + 1} is longer than {MAX_SCRIPT_ARG_CHARS} characters")
        if "\x00" in arg:
            raise p.invalid("args", f"argument {i + 1} holds a NUL byte, which no command line can carry")
    return args


def _run_script(ctx: Context, argv: list[str], workdir: str, timeout: float) -> str:
    tail: collections.deque[str] = collections.deque(maxlen=SCRIPT_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            argv, cwd=workdir, env=_script_env(ctx), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        raise TaskFailed("ScriptFailed", f"the script could not be started: {exc.strerror}") from exc

    def pump() -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            ctx.log(line)

    reader = threading.Thread(target=pump, name="script-output", daemon=True)
    reader.start()
    started = time.monotonic()
    deadline = started + timeout
    timed_out = aborted = False
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            timed_out = True
        elif ctx.aborted:
            aborted = True
        if timed_out or aborted:
            _kill_group(proc)
            break
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            ctx.progress(None, f"script running for {time.monotonic() - started:.0f} s")
    reader.join(timeout=KILL_GRACE_S)
    output = "\n".join(tail)
    ctx.check_abort()
    if timed_out:
        raise TaskFailed("ScriptTimedOut", f"the script did not finish within {timeout:g} s", output)
    if proc.returncode != 0:
        raise TaskFailed("ScriptFailed", f"the script exited with status {proc.returncode}", output)
    ctx.progress(100, "script finished")
    return output


def _kill_group(proc: subprocess.Popen) -> None:
    # The script's children (a sleep, a curl) are in its session; killing only the shell would leave them.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def reboot(ctx: Context, params: dict) -> TaskResult:
    return TaskResult(ok=True, message="rebooting", then=ctx.host.reboot)


def poweroff(ctx: Context, params: dict) -> TaskResult:
    return TaskResult(ok=True, message="powering off", then=ctx.host.poweroff)
