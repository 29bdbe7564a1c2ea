"""What the agent keeps of its registration, in its state directory (in the memory OS: /run, memory only).

The boot credential on the kernel command line is good for one registration. So that an agent restarted in
the same memory OS goes on, the tokens the registration answer handed over are kept here (mode 0600), and so
is the random key sent with the registration, which alone may ask again for an answer that was lost in
transit (docs/agent-api.md). Nothing here outlives the memory OS.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

FILE_NAME = "credentials.json"


@dataclass
class Saved:
    key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    token: str = field(default="", repr=False)  # the agent token, once handed over
    callback_token: str = field(default="", repr=False)  # for the installed OS's first-boot callback


def load(state_dir: Path) -> Saved | None:
    try:
        raw = json.loads((state_dir / FILE_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
        return None
    return Saved(**{k: str(raw.get(k) or "") for k in ("key", "token", "callback_token")})


def save(state_dir: Path, saved: Saved) -> None:
    """Written whole or not at all (temp file, fsync, rename), readable by root only."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / FILE_NAME
    tmp = state_dir / f".{FILE_NAME}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(asdict(saved)).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
