"""Terminal commands next to `make run` reach its stack.

`make run` (scripts/run.py) writes var/run.env while it runs: its pid, its URL and the settings its
processes got that the environment did not have (development mode, its private Redis, the demo's
short deadlines). manage.py adopts them, so `.venv/bin/python manage.py installs` in another terminal
sees the same database and queues the same jobs the running worker reads. Values set in the
environment win; a file left by a `make run` that is gone is ignored. Plain Python: read before Django.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_run_env(path: Path) -> dict[str, str]:
    """The file's settings if the `make run` that wrote it is still running, else {}."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    try:
        pid = int(values.pop("MAKE_RUN_PID", ""))
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return {}
    return values


def join_make_run(environ=os.environ) -> bool:
    """Adopt the settings of the `make run` running on this var dir (PROVISIONER_VAR_DIR, default var/)."""
    values = read_run_env(Path(environ.get("PROVISIONER_VAR_DIR") or ROOT / "var") / "run.env")
    values.pop("PROVISIONER_URL", None)
    for key, value in values.items():
        environ.setdefault(key, value)
    return bool(values)
