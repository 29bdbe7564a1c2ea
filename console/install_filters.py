"""The install list's filters, shared by the page (/installs/) and the REST API (GET /api/v1/installs), so that
both show the same installs for the same query string.

- ``state``: one state, or ``active`` for every install not yet ended;
- ``machine``: part of the hostname (as the page's search box);
- ``site``: the machine's site (its slug); ``profile``: the profile's name; ``batch``: the batch's id;
- ``requested_by``: who asked for it, as the list shows them (a username, or ``system``).

A value that means nothing (a state that is not one, a batch that is not a number) is refused with a 400 that
names the filter, rather than answered with installs nobody asked for."""

from __future__ import annotations

from dataclasses import dataclass, fields
from urllib.parse import urlencode

from console.queries import installs_for_pages
from core.edge import int_param
from installs.models import ACTIVE_STATES, InstallState

FILTER_FIELDS = ("state", "machine", "site", "profile", "batch", "requested_by")


@dataclass(frozen=True)
class InstallQuery:
    state: str = ""
    machine: str = ""
    site: str = ""
    profile: str = ""
    batch: str = ""
    requested_by: str = ""

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
        return found

    def query_string(self, **override) -> str:
        """The filters as a query string, for the page's links to its other pages."""
        values = {f: getattr(self, f) for f in FILTER_FIELDS} | override
        return urlencode({k: v for k, v in values.items() if v})


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
    return installs
