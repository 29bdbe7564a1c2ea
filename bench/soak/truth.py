"""What the database says, read in a Django process of its own: `python -m bench.soak.truth setup|report`.

The soak's websocket clients (autobahn on asyncio) and Django's INSTALLED_APPS (daphne, autobahn on Twisted)
cannot share an interpreter: txaio takes one event-loop framework per process. So the soak is a pure client,
as browsers and scripts are, and this process reads the truth: it makes the soak's credentials before the run
and counts what the database holds after it. It prints one JSON object.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from collections import Counter
from pathlib import Path

import django

from .stack import FAULTY, IDLE_MACHINE

_PER_MAC = re.compile(r"^(?:pxelinux\.cfg/01-|grub/grub\.cfg-01-)([0-9a-f]{2}(?:-[0-9a-f]{2}){5})$")


def setup() -> dict:
    """A technician's API token for the stream and a viewer's session for the websockets."""
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.api_tokens import create_token
    from accounts.models import User
    from audit.service import Actor

    technician = User.objects.create_user("soak-technician", password=secrets.token_urlsafe(24))
    technician.groups.add(Group.objects.get_or_create(name="technician")[0])
    _, key = create_token(technician, "soak", actor=Actor.system("soak"))
    viewer = User.objects.create_user("soak-viewer", password=secrets.token_urlsafe(24))
    viewer.groups.add(Group.objects.get_or_create(name="viewer")[0])
    session = SessionStore()
    session.update(
        {
            "_auth_user_id": str(viewer.pk),
            "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
            "_auth_user_hash": viewer.get_session_auth_hash(),
        }
    )
    session.create()
    return {"api_key": key, "session_key": session.session_key}


def stored_events(streams: dict[str, dict]) -> dict[str, list[int]]:
    """For each socket ({"install": id or null for the dashboard, "after": id}), the ids it is owed."""
    from installs.models import Event, EventKind

    out = {}
    for name, stream in streams.items():
        events = Event.objects.filter(id__gt=stream["after"])
        if stream["install"] is None:
            events = events.exclude(kind=EventKind.LOG)
        else:
            events = events.filter(install_id=stream["install"])
        out[name] = list(events.values_list("id", flat=True))
    return out


def install_figures() -> dict:
    from installs.models import ACTIVE_STATES, Install, InstallState

    installs = Install.objects.exclude(machine__hostname=IDLE_MACHINE).select_related("machine")
    states = Counter(installs.values_list("state", flat=True))
    failed = installs.filter(state=InstallState.FAILED)
    reasons = Counter(failed.values_list("failure_reason", flat=True))
    stuck = [
        {"id": i.pk, "machine": i.machine.hostname, "state": i.state, "step": i.current_step,
         "deadline_at": i.deadline_at.isoformat() if i.deadline_at else None}
        for i in installs.filter(state__in=ACTIVE_STATES).order_by("pk")
    ]  # fmt: skip
    expected_reasons = {}
    for hostname, (_, reason) in FAULTY.items():
        ended = installs.filter(machine__hostname=hostname).exclude(state__in=ACTIVE_STATES)
        expected_reasons[hostname] = {
            "requested": installs.filter(machine__hostname=hostname).count(),
            "failed_as_expected": ended.filter(state=InstallState.FAILED, failure_reason=reason).count(),
            "other": dict(Counter(f"{s}:{r}" for s, r in ended.exclude(failure_reason=reason).values_list(
                "state", "failure_reason"))),
        }  # fmt: skip
    good = installs.exclude(machine__hostname__in=list(FAULTY))
    return {
        "requested": installs.count(),
        "succeeded": states.get(InstallState.SUCCEEDED, 0),
        "failed": states.get(InstallState.FAILED, 0),
        "failed_without_reason": reasons.get("", 0),
        "cancelled": states.get(InstallState.CANCELLED, 0),
        "stuck": len(stuck),
        "failure_reasons": dict(sorted(reasons.items())),
        "good_machines_failed": dict(Counter(good.filter(state=InstallState.FAILED).values_list(
            "failure_reason", flat=True))),
        "faulty": expected_reasons,
        "stuck_installs": stuck[:20],
    }  # fmt: skip


def armed_configs(tftp_root: Path) -> list[str]:
    """Per-MAC boot configs left in the TFTP root for machines with no active install."""
    from installs.models import ACTIVE_STATES
    from inventory.models import NIC

    armed = []
    for path in sorted(p for p in tftp_root.rglob("*") if p.is_file()):
        match = _PER_MAC.match(path.relative_to(tftp_root).as_posix())
        if not match:
            continue
        mac = match.group(1).replace("-", ":")
        nic = NIC.objects.filter(mac=mac).select_related("machine").first()
        if nic is None or not nic.machine.installs.filter(state__in=ACTIVE_STATES).exists():
            armed.append(f"{path.relative_to(tftp_root)} ({nic.machine.hostname if nic else 'unknown MAC'})")
    return armed


def main() -> int:
    django.setup()
    if sys.argv[1:] == ["setup"]:
        print(json.dumps(setup()))
    elif sys.argv[1:2] == ["report"]:
        asked = json.loads(sys.stdin.read())
        installs = install_figures()
        armed = armed_configs(Path(asked["tftp_root"]))
        print(json.dumps({"installs": installs, "armed": armed, "stored": stored_events(asked["streams"])}))
    else:
        print("usage: python -m bench.soak.truth setup|report", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
