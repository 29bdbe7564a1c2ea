"""The REST API for automation, v1 (/api/v1/; the OpenAPI document is /api/v1/openapi.json, the interactive
documentation /api/v1/docs). This module holds the ``api`` object, its authentication and its documentation;
each resource's operations are a router of their own (rest_machines, rest_checks, rest_installs, rest_batches,
rest_library, rest_serial, rest_lifecycle, rest_discovery, rest_import, rest_tags, access/rest.py), added at the end.

People's scripts use it with ``Authorization: Token <key>`` (a per-user token, see accounts/api_tokens.py)
or from a logged-in browser session (writes then need the CSRF token, as the pages do). Every
endpoint checks the same role as the matching page, and every write goes through the same service
function as the page, which audits it. Responses list their fields: the install plan and token
are never among them.

Every refusal is a ``Problem`` (RFC 9457 problem details, application/problem+json; core/problems.py):
``detail`` (a sentence), ``field`` (the parameter at fault, ``body`` for the body as a whole), ``errors``
(each problem with its location) and ``problems`` (the reasons a 409 lists). Invalid input is a 400, a
body not sent as application/json a 415, and both come before any write (core/edge.py).

Every list answers in one envelope, ``{count, page, per_page, results}`` (core/paging.py), and every path
answers the same with a trailing slash.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.urls import URLPattern, path
from ninja.openapi.docs import DocsBase
from ninja.security import APIKeyHeader, SessionAuth

from access.rest import router as ssh_router
from accounts.api_tokens import user_for_key
from accounts.roles import Role, has_role
from core import edge, problems
from installs import workflow_schema

from .rest_batches import router as batches_router
from .rest_checks import router as checks_router
from .rest_discovery import router as discovery_router
from .rest_import import router as import_router
from .rest_installs import router as installs_router
from .rest_inventory import router as inventory_router
from .rest_library import router as library_router
from .rest_lifecycle import router as lifecycle_router
from .rest_machine_edit import router as machine_edit_router
from .rest_machines import router as machines_router
from .rest_serial import router as serial_router
from .rest_tags import router as tags_router


class ApiTokenAuth(APIKeyHeader):
    """Authorization: Token <key>."""

    param_name = "Authorization"

    def authenticate(self, request, key):
        scheme, _, value = (key or "").partition(" ")
        if scheme.lower() != "token" or not value:
            return None
        user = user_for_key(value.strip())
        if user is not None:
            request.user = user  # the audit trail and role checks read request.user
        return user


def _viewer_document(view):
    """The OpenAPI document, for a viewer's API token (scripts) or session (people, sent to log in first)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        user = ApiTokenAuth()(request) or (request.user if request.user.is_authenticated else None)
        if user is None and "Authorization" not in request.headers:
            return redirect_to_login(request.get_full_path())
        if user is None:
            return problems.response(401, "Unauthorized")
        if not has_role(user, Role.VIEWER):
            return problems.response(403, f"This needs the {Role.VIEWER.label} role.")
        return view(request, *args, **kwargs)

    return wrapped


class VendoredSwagger(DocsBase):
    """The interactive documentation (/api/v1/docs): Swagger UI from static/vendor/swagger-ui, started by
    static/js/api-docs.js, so that it loads where no CDN can be reached and runs under the pages' policy (no
    inline script; config/security.py)."""

    def render_page(self, request, api, **kwargs):
        return render(request, "api/docs.html", {"openapi_url": self.get_openapi_url(api, kwargs), "api": api})


class RestApi(edge.ProblemApi):
    refusals = {
        400: "Invalid input, named in field; nothing was written.",
        401: "No valid API token or session.",
        403: "The token's user lacks the role this needs.",
        415: "The body was not sent as application/json; nothing was written.",
    }

    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        workflow_schema.add_to_openapi(schema)  # what POST workflows takes as text, for editors and scripts
        return schema

    def get_openapi_operation_id(self, operation) -> str:
        """The view's name (list_machines, start_batch): what a generated client calls it, and the same
        wherever the view's module is."""
        return operation.view_func.__name__

    def _get_urls(self):
        """Every operation at its path and at its path with a trailing slash (``machines/`` answers as
        ``machines`` does): a route of its own rather than a redirect, which would lose a POST's body."""
        urls = super()._get_urls()
        slashed = [
            path(f"{u.pattern._route}/", u.callback)
            for u in urls
            if isinstance(u, URLPattern) and u.pattern._route and not u.pattern._route.endswith("/")
        ]
        return urls + slashed


api = RestApi(
    title="provisioner API",
    version="1",
    description="Machines, installs, batches, and the workflow and script library, for automation. Same roles "
    "as the web pages; the library is written by admins. "
    "Every refusal is a Problem (RFC 9457 problem details, application/problem+json); invalid input is a 400 "
    "that names the field, before any write. A workflow document is YAML text whose structure is the "
    "WorkflowDocument schema.",
    urls_namespace="api-v1",
    auth=[ApiTokenAuth(), SessionAuth(csrf=True)],
    docs=VendoredSwagger(),
    docs_url="docs",
    docs_decorator=_viewer_document,
)


# Each resource's operations live in a module of their own; they are all under /api/v1/.
api.add_router("", machines_router)
api.add_router("", checks_router)
api.add_router("", installs_router)
api.add_router("", batches_router)
api.add_router("", library_router)
api.add_router("", serial_router)
api.add_router("", lifecycle_router)
api.add_router("", discovery_router)
api.add_router("", ssh_router)
api.add_router("", import_router)
api.add_router("", inventory_router)
api.add_router("", machine_edit_router)
api.add_router("", tags_router)
edge.refuse_undeclared_query(api)
