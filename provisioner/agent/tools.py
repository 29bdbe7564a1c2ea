"""Running the memory OS's tools: the environment they get, and their outcome as one small value.

Kept apart from `host` so that `facts` (which `host` imports) can run hardware tools too.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass

from provisioner.agent.results import TaskFailed

# Disk tools live in sbin, which a minimal init or a non-login environment may leave out of PATH.
TOOL_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


@dataclass
class Completed:
    returncode: int
    output: str


def tool_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    path = [d for d in env.get("PATH", "").split(":") if d]
    env["PATH"] = ":".join(path + [d for d in TOOL_DIRS if d not in path])
    return env


def run(argv: list[str], timeout: float, input: str | None = None, new_session: bool = False) -> Completed:
    """Run a tool to its end. `new_session`: detach it from any controlling terminal, so a tool that prompts
    (getpass opens /dev/tty first) reads its standard input instead of waiting on a console."""
    stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=timeout, env=tool_env(),
            start_new_session=new_session, **stdin,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise TaskFailed("ToolMissing", f"{argv[0]} is not installed in the memory OS") from exc
    except subprocess.TimeoutExpired as exc:
        raise TaskFailed("ToolTimedOut", f"{shlex.join(argv)} did not finish within {timeout:.0f} s") from exc
    return Completed(proc.returncode, (proc.stdout or "") + (proc.stderr or ""))


def popen(argv: list[str], **kwargs) -> subprocess.Popen:
    try:
        return subprocess.Popen(argv, env=tool_env(), **kwargs)
    except FileNotFoundError as exc:
        raise TaskFailed("ToolMissing", f"{argv[0]} is not installed in the memory OS") from exc
