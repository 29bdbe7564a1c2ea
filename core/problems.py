"""The one shape of every error a machine or a program reads: RFC 9457 problem details.

Served as ``application/problem+json`` by the REST API, the agent API (its progress route included) and
the installer callbacks::

    {"type": "about:blank",                 # no problem types of our own: the status says what kind
     "title": "Bad Request",                # the status's reason phrase
     "status": 400,
     "detail": "facts.nics.0.mac: 'zz' is not a MAC address",    # for people: what is wrong, and where
     "field": "facts.nics.0.mac",           # the first field at fault ("body": the body as a whole; "" none)
     "errors": [{"loc": ["body", "body", "facts", "nics", "0", "mac"], "msg": "...", "type": "value_error"}],
     "problems": [],                        # the reasons a 409 refusal lists, one sentence each
     "reason": ""}                          # CamelCase, for programs (the agent's 403s: WrongMachine, ...)

``field``, ``errors``, ``problems`` and ``reason`` are extension members (RFC 9457 section 3.2) and always
present, so a client reads them without checking. Answer files and the iPXE script are fetched by
installers and firmware, which show no body: their errors stay text/plain (docs/agent-api.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from django.http import JsonResponse
from ninja import Schema

MEDIA_TYPE = "application/problem+json"
# Where a validation error's location starts: the source, then (for a body) ninja's parameter name ``body``.
_SOURCES = ("body", "query", "path", "header", "cookie", "form")


class ProblemError(Schema):
    """One problem with its location, as pydantic and django-ninja report them (never the input)."""

    loc: list[str]
    msg: str
    type: str
    line: int | None = None  # where a document sent as text is wrong (a workflow's YAML): its line, from 1


class Problem(Schema):
    """Every error answer of the APIs and the installer callbacks (RFC 9457 problem details)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str = ""
    errors: list[ProblemError] = []
    problems: list[str] = []
    reason: str = ""


def problem(
    status: int,
    detail: str,
    *,
    field: str = "",
    errors: Iterable[dict] = (),
    problems: Iterable[str] = (),
    reason: str = "",
) -> dict:
    """The problem document for an answer of ``status``."""
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "field": field,
        "errors": list(errors),
        "problems": list(problems),
        "reason": reason,
    }


def respond(body: dict, *, headers: dict | None = None) -> JsonResponse:
    """A problem document as the HTTP answer (never cached: it is about this request)."""
    return JsonResponse(
        body, status=body["status"], content_type=MEDIA_TYPE, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def response(status: int, detail: str, **extra) -> JsonResponse:
    return respond(problem(status, detail, **extra))


def from_refusal(refusal, source: str = "body") -> dict:
    """Input refused at the edge (a core.edge.Refusal, which imports this module); ``source`` is where it
    was: body, query, path, form or method."""
    return problem(refusal.status, refusal.message, field=refusal.field, errors=refusal.errors(source))


def from_validation_errors(errors: Iterable[dict]) -> dict:
    """A 400 for input that failed validation (pydantic's or django-ninja's list), naming the first field."""
    errors = plain_errors(errors)
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    field = field_of(first["loc"])
    return problem(400, f"{field or 'body'}: {first['msg']}", field=field, errors=errors)


def plain_errors(errors: Iterable[dict]) -> list[dict]:
    """Validation errors as plain JSON: location, message, type (never the input, which may be what
    could not be stored, or a secret)."""
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in errors
    ]


def field_of(loc: list[str]) -> str:
    """The field a location names, as a client spells it: ``facts.nics.0.mac``, ``page``, ``hostname``.
    (ninja puts a body under its parameter's name, ``body``, after the source.)"""
    parts = list(loc)
    if parts and parts[0] in _SOURCES:
        if parts.pop(0) == "body" and parts[:1] == ["body"]:
            parts.pop(0)
    return ".".join(parts)


def document(schema: dict, answers: dict[int, str]) -> None:
    """Put Problem in an OpenAPI document: add the ``answers`` every operation can give (415 only where
    the operation takes a body), and make every error answer's body a Problem, as application/problem+json."""
    definition = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(definition.pop("$defs", {}))
    components["Problem"] = definition
    content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in answers.items():
                if status == 415 and "requestBody" not in operation:
                    continue
                if status not in responses and str(status) not in responses:
                    responses[status] = {"description": description}
            for status, answer in responses.items():
                if int(status) >= 400:
                    answer["content"] = content
