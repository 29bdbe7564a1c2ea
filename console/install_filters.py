"""The install list's filters, shared by the page (/installs/) and the REST API (GET /api/v1/installs), so that
both show the same installs for the same query string.

- ``state``: one state, or ``active`` for every install not yet ended;
- ``machine``: part of the hostname (as the page's search box);
- ``site``: the machine's site (its slug); ``profile``: the profile's name; ``batch``: the batch's id;
- ``requested_by``: who asked for it, as the list shows them (a username, or ``system``);
- ``since`` and ``until``: requested on or after, on or before, a day (``YYYY-MM-DD``, the whole day, in the
  server's time zone as the list shows times) or an instant (an ISO 8601 date and time).

A value that means nothing (a state that is not one, a batch that is not a number) is refused with a 400 that
names the filter, rather than answered with installs nobody asked for."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from django.utils import timezone

from console.queries import installs_for_pages
from core.edge import int_param
from installs.models import ACTIVE_STATES, InstallState

FILTER_FIELDS = ("state", "machine", "site", "profile", "batch", "requested_by", "since", "until")


@dataclass(frozen=True)
class InstallQuery:
    state: str = ""
    machine: str = ""
    site: str = ""
    profile: str = ""
    batch: str = ""
    requested_by: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def from_params(cls, params) -> InstallQuery:
        """From a query string (the page's) or a dict of values (the API's, where ``batch`` is a number)."""
        return cls(**{f.name: _param(params.get(f.name)) for f in fields(cls)})

    @property
    def active(self) -> bool:
        return any(getattr(self, f) for f in FILTER_FIELDS)

    def problems(self) -> dict[str, str]:
        """Each filter whose value means nothing, with what it takes."""
        found = {}
        if self.state and self.state != "active" and self.state not in InstallState.values:
            found["state"] = f"“{self.state}” is not a state; use active or one of {', '.join(InstallState.values)}."
        if self.batch and int_param(self.batch) is None:
            found["batch"] = f"“{self.batch}” is not a batch id (a whole number)."
        for name in ("since", "until"):
            if getattr(self, name) and _instant(getattr(self, name), end_of_day=False) is None:
                found[name] = f"“{getattr(self, name)}” is not a date (YYYY-MM-DD) or an ISO 8601 date and time."
        return found

    def query_string(self, **override) -> str:
        """The filters as a query string, for the page's links to its other pages."""
        values = {f: getattr(self, f) for f in FILTER_FIELDS} | override
        return urlencode({k: v for k, v in values.items() if v})


def _instant(value: str, *, end_of_day: bool) -> datetime | None:
    """The moment ``value`` names: a day's start (or, with ``end_of_day``, the next day's start), or the
    instant itself; None when it names none. A time without a zone is in the server's."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day + timedelta(days=1 if end_of_day else 0), time.min)
        else:
            moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        return None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def _param(value) -> str:
    return ("" if value is None else str(value)).strip()[:200]


def install_queryset(query: InstallQuery):
    """Installs matching ``query``, newest first, with what the list shows selected. A value ``problems()``
    refuses is left out, so that no caller that skipped the check gets a 500."""
    installs = installs_for_pages().order_by("-id")
    if query.state == "active":
        installs = installs.filter(state__in=ACTIVE_STATES)
    elif query.state in InstallState.values:
        installs = installs.filter(state=query.state)
    if query.machine:
        installs = installs.filter(machine__hostname__icontains=query.machine)
    if query.site:
        installs = installs.filter(machine__rack__site__slug=query.site)
    if query.profile:
        installs = installs.filter(profile__name=query.profile)
    if (batch_id := int_param(query.batch)) is not None:
        installs = installs.filter(batch_id=batch_id)
    if query.requested_by:
        installs = installs.filter(requested_by_label=query.requested_by)
    if query.since and (since := _instant(query.since, end_of_day=False)) is not None:
        installs = installs.filter(created_at__gte=since)
    if query.until and (until := _instant(query.until, end_of_day=True)) is not None:
        # a day includes all of it; an instant includes itself
        installs = (
            installs.filter(created_at__lt=until) if len(query.until) == 10 else installs.filter(created_at__lte=until)
        )
    return installs
