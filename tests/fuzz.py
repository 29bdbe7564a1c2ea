"""What every schemathesis run of ours checks of one answer: never a server error; a request outside the
schema (schemathesis' negative cases) refused with a 4xx; every refusal a problem document (RFC 9457,
core/problems.py) naming its status; and a refused request writes nothing."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from schemathesis.core.parameters import ParameterLocation

# What the APIs validate. (Negative headers are the token's, which every call sets itself.)
VALIDATED = (ParameterLocation.QUERY, ParameterLocation.PATH, ParameterLocation.BODY)
# Answers that write nothing. (A 403 or 409 is the service's refusal, which its audit may record.)
WRITE_NOTHING = (400, 401, 404, 405, 413, 415)


def _outside_schema(case, response) -> bool:
    """Whether what was sent violates the schema. A query parameter schemathesis adds but that never
    reaches the wire (`{"": [[]]}`: no value, so no parameter) makes a case negative on paper only."""
    if any(case.meta.is_negative_at(location) for location in VALIDATED if location != ParameterLocation.QUERY):
        return True
    if not case.meta.is_negative_at(ParameterLocation.QUERY):
        return False
    undeclared = set(case.query or {}) - {p.name for p in case.operation.query}
    sent = {name for name, _ in parse_qsl(urlsplit(response.request.url).query, keep_blank_values=True)}
    return not undeclared or bool(undeclared & sent)


def _header(response, name: str) -> str:
    """One header of a schemathesis response (its headers: lower-case names, each a list of values)."""
    values = {key.lower(): value for key, value in response.headers.items()}.get(name, [""])
    return values[0] if isinstance(values, list) else values


def check_answer(case, response, writes, before) -> str:
    """Assert the three rules for ``case``'s ``response``; ``writes()`` is what the database holds now and
    ``before`` what it held before the call. Returns the request in one line, for further messages."""
    what = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}: {response.status_code}"
    assert response.status_code < 500, f"{what} {response.text[:500]}"
    negative = _outside_schema(case, response)
    if negative:
        assert 400 <= response.status_code < 500, f"a request outside the schema was accepted: {what}"
    if response.status_code >= 400:
        assert _header(response, "content-type") == "application/problem+json", what
        body = response.json()
        assert body["status"] == response.status_code and isinstance(body["detail"], str) and body["detail"], what
        assert {"type", "title", "field", "errors", "problems"} <= body.keys(), what
    if negative or response.status_code in WRITE_NOTHING:
        assert writes() == before, what
    return what
