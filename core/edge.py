"""What every request is refused for before any view logic runs: input the database cannot store or
the process cannot bound.

PostgreSQL stores no NUL (U+0000) in text or jsonb and no lone surrogate (it is not UTF-8); jsonb has
no NaN or Infinity; a bigint ends at 2**63 - 1; and a JSON body nested ten thousand deep costs the
parser its stack. Each of these once reached a query or a parser and came back as a 500, a hung CSV
download, or no answer at all. Here each is a 4xx that names the field, before anything is written:

- ``EdgeMiddleware``: the path, the query string and the form fields of every request Django serves;
- ``load_json_object``: the one loader of JSON bodies (both APIs, installer callbacks, the progress
  route): declared as JSON, one object, at most ``MAX_JSON_DEPTH`` deep, only text and numbers the
  database can store;
- ``Text``, ``DbId``, ``Page`` and friends: the same bounds in the APIs' schemas, so that their OpenAPI
  documents say what is refused.

Invalid input is a 400 everywhere (the pages, the REST API, the agent API); a body that is not
declared as JSON a 415. The APIs and the installer callbacks answer as problem details (core/problems.py,
``answer_problems_in``); the pages with a line of text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from functools import wraps
from typing import Annotated

from django.http import Http404, HttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError
from ninja.parser import Parser
from ninja.utils import normalize_path
from pydantic import AfterValidator, Field

from core import problems

# PostgreSQL's integer and bigint (ids are BigAutoField).
INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
# The deepest page number a list takes: its OFFSET then fits a bigint at any page size.
PAGE_MAX = INT_MAX
# Deeper than any body the APIs read (facts are four levels); the parser's stack is safe far beyond.
MAX_JSON_DEPTH = 32
# In the OpenAPI documents, for clients and fuzzers: no NUL. (Lone surrogates cannot be written in
# a pattern portably; they are refused all the same.)
NO_NUL_PATTERN = r"^[^\x00]*$"


class Refusal(ValueError):
    """Input refused at the edge: ``field`` names what is wrong (``body`` for the body as a whole),
    ``message`` says it to a person, ``status`` is the HTTP answer."""

    def __init__(self, field: str, problem: str, *, status: int = 400, kind: str = "value_error"):
        self.field = field
        self.problem = problem
        self.status = status
        self.kind = kind
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.field}: {self.problem}"

    def errors(self, source: str) -> list[dict]:
        """As a validation error list, for the APIs' ``errors``: ``source`` is body, query, path, form or
        method; a body's locations start as django-ninja's do (the source, then the parameter, ``body``)."""
        if source == "body":  # a body's field is a path into it; any other is a parameter's name
            loc = ["body", "body", *([] if self.field == "body" else self.field.split("."))]
        else:
            loc = [source, self.field]
        return [{"loc": loc, "msg": self.problem, "type": self.kind}]


# --- text and numbers -------------------------------------------------------------------------


def unstorable(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text``, or None when it can."""
    if "\x00" in text:
        return "contains a NUL character (U+0000), which cannot be stored"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode), which cannot be stored"
    return None


def check_text(field: str, text: str) -> None:
    if problem := unstorable(text):
        raise Refusal(field, problem, kind="string_unstorable")


def find_unstorable(value, path: tuple = ()) -> Refusal | None:
    """The first field, in document order, of a parsed JSON value that the database cannot store: text
    with a NUL or a lone surrogate (keys too: a bad key is reported as its object), a number that is
    not finite (jsonb has no NaN or Infinity)."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if problem := unstorable(item):
                return Refusal(_dotted(where), problem, kind="string_unstorable")
        elif isinstance(item, dict):
            for key in item:
                if problem := unstorable(key):
                    return Refusal(_dotted(where), f"a key {problem}", kind="string_unstorable")
            stack.extend(((*where, k), v) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(((*where, i), v) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, float) and not math.isfinite(item):
            return Refusal(_dotted(where), "is not a finite number", kind="finite_number")
    return None


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path) or "body"


def int_param(value: str | None, *, maximum: int = BIGINT_MAX) -> int | None:
    """An id or count from a query string or form: ASCII digits the column holds, else None. (``str.isdigit``
    also takes "²", which ``int()`` refuses; a number past the column is no row at all.)"""
    if value and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
        return number if number <= maximum else None
    return None


# --- JSON bodies ------------------------------------------------------------------------------

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# A NUL or a surrogate can only reach a JSON value through a \u escape (raw control characters and
# encoded surrogates are not valid JSON, nor UTF-8): only a body with one is walked for them.
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")
_PAIR = re.compile(rb"\[\]|\{\}")


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays and objects more than ``limit`` deep, told before parsing:
    strings out, brackets kept, innermost pairs removed once per level (each pass in C)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    for _ in range(limit):
        if not brackets:
            return False
        brackets, removed = _PAIR.subn(b"", brackets)
        if not removed:
            return False  # unbalanced: malformed, which the parser reports
    return bool(brackets)


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def load_json_object(body: bytes, content_type: str | None, *, max_bytes: int | None = None) -> dict:
    """A request body as one JSON object, or a Refusal naming what is wrong. Nothing is parsed before the
    content type and the depth are known to be fine."""
    if not is_json(content_type):
        shown = (content_type or "none").split(";", 1)[0].strip()[:100] or "none"
        raise Refusal("body", f"send JSON as Content-Type: application/json (this was {shown})", status=415)
    if max_bytes is not None and len(body) > max_bytes:
        raise Refusal("body", f"is larger than {max_bytes} bytes", status=413)
    if too_deep(body):
        raise Refusal("body", f"nests deeper than {MAX_JSON_DEPTH} levels", kind="json_too_deep")
    infinite = []  # NaN, Infinity or a number past a float, noticed as it is parsed

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            infinite.append(text)
        return value

    try:
        # JSON between systems is UTF-8 (RFC 8259), which the escape check below relies on too.
        data = json.loads(body.decode("utf-8"), parse_float=number, parse_constant=number)
    except UnicodeDecodeError:
        raise Refusal("body", "is not UTF-8", kind="json_invalid") from None
    except (ValueError, RecursionError) as exc:  # RecursionError: belt and braces, too_deep comes first
        raise Refusal("body", f"Invalid JSON: {exc}", kind="json_invalid") from None
    if not isinstance(data, dict):
        raise Refusal("body", f"must be a JSON object, not {_json_type(data)}", kind="model_type")
    # Walked only when it may hold something (a report of 200 log lines: 60 us saved).
    if (infinite or _UNSTORABLE_ESCAPE.search(body)) and (refusal := find_unstorable(data)):
        raise refusal
    return data


def _json_type(value) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


class JsonObjectParser(Parser):
    """django-ninja's body parser, through load_json_object. ninja answers 400 for any exception here
    and keeps it as the error's cause, where each API's handler finds the Refusal."""

    def parse_body(self, request) -> dict:
        return load_json_object(request.body, request.content_type)


def refuse_undeclared_query(api) -> None:
    """Have every operation of a django-ninja ``api`` refuse query parameters it does not declare, as
    invalid input: a typo (``?vendr=Dell``) must not quietly list everything, nor an imagined
    ``?dry_run=1`` go ahead with a write. Call it once the operations are declared, routers added included."""
    tops = [api.default_router, *(router for _prefix, router, *_ in getattr(api, "_routers", ()))]
    seen = set()
    for router in (r for top in tops for r in _routers(top)):
        if id(router) not in seen:
            seen.add(id(router))
            _refuse_undeclared_in(router)


def _routers(router) -> list:
    """The router and those added to it, at any depth (django-ninja keeps them in ``_routers``, as the API
    keeps the ones added to it)."""
    found = [router]
    for _prefix, child, *_ in getattr(router, "_routers", ()):
        found.extend(_routers(child))
    return found


def _refuse_undeclared_in(router) -> None:
    for path_view in router.path_operations.values():
        for operation in path_view.operations:
            declared = frozenset(
                name
                for model in operation.models
                if model.__ninja_param_source__ == "query"
                for name in model.__ninja_flatten_map__
            )
            operation.view_func = _declaring(operation.view_func, declared)


def _declaring(view, declared: frozenset[str]):
    @wraps(view)
    def checked(request, **values):
        for name in request.GET:
            if name not in declared:
                raise Refusal(name, "is not a parameter of this operation", kind="unknown_parameter")
        return view(request, **values)

    return checked


def refusal_of(exc: BaseException) -> Refusal | None:
    """The Refusal behind one of ninja's 400s (``HttpError(...) from refusal``), if that is what it is."""
    cause = exc.__cause__
    return cause if isinstance(cause, Refusal) else None


# --- schema types -----------------------------------------------------------------------------


def _storable(value: str) -> str:
    if problem := unstorable(value):
        raise ValueError(problem)
    return value


class _NoNulDocumented:
    """Puts NO_NUL_PATTERN in a string's JSON schema, unless the field has a pattern of its own."""

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        schema.setdefault("pattern", NO_NUL_PATTERN)
        return schema


# Text the database can store. The loader and the middleware refuse the rest first; this says so in
# the OpenAPI documents, and checks it again for a schema validated on its own.
Text = Annotated[str, AfterValidator(_storable), _NoNulDocumented()]
# A row id: what a bigint holds.
DbId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
# A count stored in an integer column.
DbCount = Annotated[int, Field(ge=1, le=INT_MAX)]
Page = Annotated[int, Field(ge=1, le=PAGE_MAX)]


# --- the APIs -------------------------------------------------------------------------------


class ProblemApi(NinjaAPI):
    """A django-ninja API whose every refusal is a problem document (core/problems.py): invalid input, input
    refused here, its own HttpErrors (with ``problems`` when they carry them) and 404s, and what the
    middleware refuses on its routes. ``refusals`` are the answers every operation can give, for its
    OpenAPI document. Bodies are read by load_json_object."""

    refusals: dict[int, str] = {}

    def __init__(self, **kwargs):
        kwargs.setdefault("parser", JsonObjectParser())
        super().__init__(**kwargs)
        answer_problems_in(self.urls_namespace)
        self.add_exception_handler(ValidationError, self._invalid)
        self.add_exception_handler(HttpError, self._http_error)
        self.add_exception_handler(Refusal, self._refused)
        self.add_exception_handler(Http404, self._not_found)

    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        problems.document(schema, self.refusals)
        return schema

    def _get_bound_routers(self):
        """django-ninja's routers, with the operations of one path gathered on the first router that serves it:
        a resource's reads and writes may live in different modules (GET machines here, POST machines there),
        but Django dispatches a path to one view, which must then know every method (else a 405)."""
        routers = super()._get_bound_routers()
        if not getattr(self, "_paths_shared", False):
            self._paths_shared = True
            share_paths(routers)
        return routers

    @staticmethod
    def _invalid(request, exc: ValidationError):
        return problems.respond(problems.from_validation_errors(exc.errors))

    @staticmethod
    def _http_error(request, exc: HttpError):
        if refusal := refusal_of(exc):
            return problems.respond(problems.from_refusal(refusal))
        return problems.response(exc.status_code, str(exc), problems=getattr(exc, "problems", []))

    @staticmethod
    def _refused(request, exc: Refusal):
        return problems.respond(problems.from_refusal(exc, "query" if exc.kind == "unknown_parameter" else "body"))

    @staticmethod
    def _not_found(request, exc: Http404):
        return problems.response(404, str(exc) or "Not Found")


def share_paths(routers) -> None:
    """Move every operation of a path that an earlier router serves too onto that router's path view."""
    first: dict[str, object] = {}
    for router in routers:
        for path in list(router.path_operations):
            route = normalize_path("/".join(p for p in (router.prefix, path) if p)).strip("/")
            view = router.path_operations[path]
            if route not in first:
                first[route] = view
                continue
            shared = first[route]
            shared.operations.extend(view.operations)
            shared.is_async = shared.is_async or view.is_async
            del router.path_operations[path]


# --- the middleware ---------------------------------------------------------------------------

# URL namespaces (the APIs) and URL names (the installer callbacks) whose refusals are problem details
# (core/problems.py); every other page gets a line of text.
_problem_routes: set[str] = set()


def answer_problems_in(name: str) -> None:
    """Have refusals of requests to the URL namespace or URL name ``name`` answered as problem details."""
    if not name:
        raise ValueError("a route without a name cannot be told apart from the pages")
    _problem_routes.add(name)


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class EdgeMiddleware:
    """Refuses text the database cannot store in the path, the query string and form fields, with a 400
    that names the parameter, before the view (and so before any write, or an export's first row).
    It runs once the URL is resolved, so the answer is in the shape of the API asked."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code == 405 and response.get("Content-Type", "").startswith("text/"):
            # An API's own words for a method it does not serve (django-ninja's is a line of text).
            if self._answers_problems(request):
                allowed = response.get("Allow", "")
                refusal = Refusal("method", f"{request.method} is not served here; use {allowed}", status=405)
                return problems.respond(problems.from_refusal(refusal, "method"), headers={"Allow": allowed})
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        try:
            source = "path"
            for name, value in view_kwargs.items():
                if isinstance(value, str):
                    check_text(name, value)
            check_text("path", request.path)
            source = "query"
            _check_pairs(request.GET.lists(), "query string")
            if request.method not in ("GET", "HEAD", "OPTIONS") and request.content_type in FORM_TYPES:
                source = "form"
                if request.content_type == "multipart/form-data":
                    # Read whole first, so that a view can still read the raw body (nothing here takes uploads).
                    request.body  # noqa: B018
                _check_pairs(request.POST.lists(), "form")
        except Refusal as refusal:
            return self.refuse(request, refusal, source)
        except MultiPartParserError as exc:
            return self.refuse(request, Refusal("body", f"is not a readable form: {exc}"), "form")
        return None

    @staticmethod
    def _answers_problems(request) -> bool:
        match = getattr(request, "resolver_match", None)
        return match is not None and (match.namespace in _problem_routes or match.url_name in _problem_routes)

    def refuse(self, request, refusal: Refusal, source: str) -> HttpResponse:
        if self._answers_problems(request):
            return problems.respond(problems.from_refusal(refusal, source))
        return HttpResponse(f"Refused: {refusal.message}.\n", status=refusal.status, content_type="text/plain")


def _check_pairs(pairs: Iterable[tuple[str, list[str]]], what: str) -> None:
    for key, values in pairs:
        if problem := unstorable(key):
            raise Refusal(what, f"a parameter name {problem}", kind="string_unstorable")
        for value in values:
            check_text(key, value)
