"""Who may see which SSH session, and the filters the pages and the API share (access/session_views.py,
access/rest.py).

A recording holds what a person typed and saw on a machine, passwords typed at prompts included: a
technician sees only the sessions they opened, an admin all of them, a viewer none.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from accounts.roles import Role, has_role, role_of
from core.asciicast import read_cast

from .models import ShellSession

# What a watcher joining an open session is shown of the screen so far: the end of its output.
SCREEN_SO_FAR_BYTES = 256 * 1024
FILTER_MAX = 200


def visible_to(user) -> QuerySet[ShellSession]:
    sessions = ShellSession.objects.select_related("machine", "site").order_by("-started_at", "-pk")
    role = role_of(user)
    if role >= Role.ADMIN:
        return sessions
    if role >= Role.TECHNICIAN:
        return sessions.filter(opened_by=user)
    return sessions.none()


def may_read(user, session: ShellSession) -> bool:
    if has_role(user, Role.ADMIN):
        return True
    return has_role(user, Role.TECHNICIAN) and session.opened_by_id is not None and session.opened_by_id == user.pk


@dataclass(frozen=True)
class SessionFilters:
    """``q`` searches the text typed and shown; ``user`` is who opened it; ``state`` is open or ended."""

    q: str = ""
    user: str = ""
    machine: str = ""
    state: str = ""

    @classmethod
    def from_params(cls, params) -> SessionFilters:
        def value(name: str) -> str:
            text = params.get(name) or ""
            return text.replace("\x00", "").strip()[:FILTER_MAX]

        state = value("state")
        return cls(
            q=value("q"),
            user=value("user"),
            machine=value("machine").lower(),
            state=state if state in ("open", "ended") else "",
        )

    def apply(self, sessions: QuerySet[ShellSession]) -> QuerySet[ShellSession]:
        if self.q:
            sessions = sessions.filter(transcript__icontains=self.q)
        if self.user:
            sessions = sessions.filter(opened_by_label=self.user)
        if self.machine:
            sessions = sessions.filter(hostname=self.machine)
        if self.state == "open":
            sessions = sessions.filter(ended_at__isnull=True)
        elif self.state == "ended":
            sessions = sessions.filter(ended_at__isnull=False)
        return sessions

    def as_dict(self) -> dict:
        return {"q": self.q, "user": self.user, "machine": self.machine, "state": self.state}


def screen_so_far(session: ShellSession) -> bytes:
    """The output recorded so far (its last SCREEN_SO_FAR_BYTES), for a watcher who joins an open session."""
    try:
        _, events = read_cast(session.cast_path)
    except (OSError, ValueError):
        return b""
    shown = "".join(text for _, kind, text in events if kind == "o").encode()
    return shown[-SCREEN_SO_FAR_BYTES:]


def recording_problem(session: ShellSession) -> str:
    """Why the session's recording cannot be replayed, or "" when it can."""
    if not session.cast_path.exists():
        return "This session has no recording (it never connected, or retention removed it)."
    try:
        read_cast(session.cast_path)
    except (OSError, ValueError) as exc:
        return f"The recording cannot be read: {exc}"
    return ""
