"""What every router of the v1 REST API shares: the role check, the actor a write is audited as, and the 409
that lists a service function's reasons (the problem document's ``problems``)."""

from __future__ import annotations

from ninja.errors import HttpError

from accounts.roles import Role, has_role
from audit.service import Actor
from core import problems
from core.paging import page_of


def need(request, role: Role) -> None:
    """A 403 unless the token's or the session's user has ``role`` (the page's role for the same thing)."""
    if not has_role(request.auth, role):
        raise HttpError(403, f"This needs the {role.label} role.")


def actor(request) -> Actor:
    return Actor.for_user(request.auth)


class RefusedError(HttpError):
    """A 409: the service function refused, for the reasons listed in ``problems``."""

    def __init__(self, problems: list[str]):
        super().__init__(409, "Refused: " + "; ".join(problems))
        self.problems = problems


def filtered_page(request, filters, query_class, queryset, serialize):
    """A list that takes its page's filters: the viewer role, the filters read as the page reads them (a
    ``query_class`` with ``from_params`` and ``problems``), a 400 for one that means nothing, then one page of
    ``queryset(query)`` in the envelope."""
    need(request, Role.VIEWER)
    query = query_class.from_params(filters.model_dump())
    if refused := filter_refusal(query):
        return refused
    return page_of(queryset(query), filters, serialize)


def filter_refusal(query):
    """The 400 for a list's query (console/filters.py, console/install_filters.py) with a filter that means
    nothing, naming each such filter; None when every filter means something."""
    refused = query.problems()
    if not refused:
        return None
    errors = [{"loc": ["query", field], "msg": problem, "type": "value_error"} for field, problem in refused.items()]
    field, problem = next(iter(refused.items()))
    return problems.response(400, f"{field}: {problem}", field=field, errors=errors)
