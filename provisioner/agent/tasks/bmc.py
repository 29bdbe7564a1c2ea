"""create_bmc_user: a BMC user of the control plane's own, made from inside the machine (no BMC credentials
needed in-band), so a machine found by discovery can be managed without anyone typing its factory password.

Safe to repeat: the same user name lands in the same slot and gets the same settings again.
"""

from __future__ import annotations

import json

import provisioner.agent.tasks.params as p
from provisioner.agent import ipmi
from provisioner.agent.context import Context
from provisioner.agent.results import TaskFailed

# IPMI user ids go up to 63 (six bits in Set User Access); 1 is the anonymous user.
MAX_USER_ID = 63


def _password(params: dict) -> str:
    value = params.get("password")
    # The message names the rule, never the value.
    if not isinstance(value, str) or not 1 <= len(value) <= ipmi.PASSWORD_MAX:
        raise p.invalid("password", f"1 to {ipmi.PASSWORD_MAX} characters are required")
    if not all(" " <= c <= "~" for c in value):
        raise p.invalid("password", "only printable ASCII characters are allowed")
    return value


def _user_id(params: dict) -> int | None:
    value = params.get("user_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not ipmi.FIRST_NAMED_USER <= value <= MAX_USER_ID:
        raise p.invalid("user_id", f"a whole number from {ipmi.FIRST_NAMED_USER} to {MAX_USER_ID} is required")
    return value


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "********") if secret else text


def create_bmc_user(ctx: Context, params: dict) -> str:
    username = p.text(params, "username")
    if not ipmi.USERNAME.match(username):
        raise p.invalid("username", "1 to 16 letters, digits, '.', '_' or '-', starting with a letter or digit")
    password = _password(params)
    user_id = _user_id(params)
    ctx.progress(10, f"creating BMC user {username}")
    try:
        made = ctx.host.create_bmc_user(username, password, user_id, ctx.log)
    except ipmi.NoBmc as exc:
        raise TaskFailed("BmcNotFound", _scrub(str(exc), password)) from None
    except ipmi.UserFailed as exc:
        raise TaskFailed(exc.reason, _scrub(exc.message, password), _scrub(exc.output, password)) from None
    except TaskFailed as exc:
        # A missing or hung ipmitool: its message quotes the command line, which never holds the password.
        raise TaskFailed(exc.reason, _scrub(exc.message, password), _scrub(exc.output, password)) from None
    ctx.progress(100, f"BMC user {username} is slot {made['user_id']} on LAN channel {made['channel']}")
    return json.dumps(made, sort_keys=True)
