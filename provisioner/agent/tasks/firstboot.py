"""first_boot_callback: the installed OS tells the control plane, once, that it booted.

An image install is proven only when the machine boots what was written: the task leaves a systemd oneshot unit
in the target root that POSTs to `<provisioner.url>/i/<callback token>/events/finished` at first boot, then
disables itself and deletes the file holding the URL. The callback token came with the agent's registration
answer; it opens only the install's callbacks (never the agent API), so the installed disk holds nothing more.
The URL is built here from the agent's own URL and callback token and never travels in task params (the
control plane stores params).
"""

from __future__ import annotations

import os
import re
import uuid

import provisioner.agent.tasks.params as p
from provisioner.agent.context import Context
from provisioner.agent.results import TaskFailed
from provisioner.agent.tasks.target import _target_file, _write

UNIT_NAME = "provisioner-first-boot.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}"
ENV_PATH = "/etc/provisioner/first-boot"
URL_VARIABLE = "PROVISIONER_FIRST_BOOT_URL"

# What may appear in a URL written into a systemd EnvironmentFile and expanded by sh: no quote, backslash,
# dollar, backtick or whitespace can reach either parser.
_SAFE_URL = re.compile(r"https?://[A-Za-z0-9._~:/?#\[\]@!&()*+,;=%-]+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")

# curl or wget, whichever the image carries; both retry for about five minutes while the network comes up.
# `$$` is systemd's escape for a `$` that sh must see.
_POST = (
    "if command -v curl >/dev/null 2>&1; then "
    "exec curl -fsS -o /dev/null -X POST --retry 30 --retry-delay 10 --retry-connrefused --max-time 30 "
    f'-d step=first-boot "$${URL_VARIABLE}"; '
    f'else exec wget -q -O /dev/null --tries=30 --waitretry=10 --post-data step=first-boot "$${URL_VARIABLE}"; fi'
)

UNIT = f"""\
# Written by the provisioner agent: tells the control plane once that the installed OS booted.
[Unit]
Description=Report the first boot of this installed system to provisioner
Wants=network-online.target
After=network-online.target
ConditionPathExists={ENV_PATH}

[Service]
Type=oneshot
EnvironmentFile={ENV_PATH}
ExecStart=/bin/sh -c '{_POST}'
# Only after a delivered callback: a failed one runs again at the next boot.
ExecStartPost=/bin/systemctl disable {UNIT_NAME}
ExecStartPost=/bin/rm -f {ENV_PATH}
TimeoutStartSec=10min

[Install]
WantedBy=multi-user.target
"""


def callback_url(base_url: str, token: str) -> str:
    url = f"{base_url.rstrip('/')}/i/{token}/events/finished"
    if not _TOKEN.fullmatch(token) or not _SAFE_URL.fullmatch(url):
        # The message never quotes the token: task messages are stored and shown.
        raise TaskFailed("InvalidCallbackUrl", "the agent's URL or token cannot be written into a systemd unit")
    return url


def _link(ctx: Context, relative: str, target: str) -> None:
    """A symlink pointing at `target` (a path inside the installed system), replaced atomically."""
    parent = _target_file(ctx, os.path.dirname(relative))
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / os.path.basename(relative)
    tmp = parent / f".{path.name}.{uuid.uuid4().hex}"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def first_boot_callback(ctx: Context, params: dict, *, identity=None) -> str:
    if params:
        # A URL or token in params would be stored by the control plane; this task takes nothing.
        raise p.invalid(sorted(params)[0], "first_boot_callback takes no params")
    # The running agent hands in its own URL and the callback token its registration answer carried.
    identity = identity or ctx.identity
    if identity is None:
        raise TaskFailed("AgentConfigUnavailable", "this agent has no control plane URL and callback token to leave")
    url = callback_url(*identity())
    env_file = _target_file(ctx, ENV_PATH)
    env_file.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(env_file.parent, 0o700)
    _write(
        env_file,
        f"# Written by the provisioner agent for {UNIT_NAME}, which deletes it after the callback.\n"
        f"{URL_VARIABLE}={url}\n",
        0o600,
        owner=(0, 0),
    )
    _write(_target_file(ctx, UNIT_PATH), UNIT, 0o644, owner=(0, 0))
    _link(ctx, WANTS_LINK, UNIT_PATH)
    ctx.progress(100, "first-boot callback installed")
    return f"{UNIT_PATH} enabled (multi-user.target); it reports the first boot once, then disables itself"
