"""What every schemathesis run of ours checks of one answer: never a server error; a request outside the
schema (schemathesis' negative cases) refused with a 4xx; and a refused request writes nothing."""

from __future__ import annotations

from schemathesis.core.parameters import ParameterLocation

# What the APIs validate. (Negative headers are the token's, which every call sets itself.)
VALIDATED = (ParameterLocation.QUERY, ParameterLocation.PATH, ParameterLocation.BODY)
# Answers that write nothing. (A 403 or 409 is the service's refusal, which its audit may record.)
WRITE_NOTHING = (400, 401, 404, 405, 413, 415)


def _outside_schema(case) -> bool:
    """Whether what was sent violates the schema. A query parameter with no value at all (an empty list:
    schemathesis generates `{"": []}`) is not sent, so a case negative only by such a parameter sends
    nothing outside the schema."""
    if any(case.meta.is_negative_at(location) for location in VALIDATED if location != ParameterLocation.QUERY):
        return True
    if not case.meta.is_negative_at(ParameterLocation.QUERY):
        return False
    declared = {p.name for p in case.operation.query}
    unsent = {name for name, value in (case.query or {}).items() if value == [] or value is None}
    return not (unsent and unsent - declared and set(case.query) - unsent <= declared)


def check_answer(case, response, writes, before) -> str:
    """Assert the three rules for ``case``'s ``response``; ``writes()`` is what the database holds now and
    ``before`` what it held before the call. Returns the request in one line, for further messages."""
    what = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}: {response.status_code}"
    assert response.status_code < 500, f"{what} {response.text[:500]}"
    negative = _outside_schema(case)
    if negative:
        assert 400 <= response.status_code < 500, f"a request outside the schema was accepted: {what}"
    if negative or response.status_code in WRITE_NOTHING:
        assert writes() == before, what
    return what
