"""REST for the workflow and script library (added to the v1 API by console/rest.py).

Read by viewers; written by admins, as in the admin site (a workflow decides what every install of the
profiles naming it does to a machine, as the profile itself does). Every save goes through
installs/library.py, which checks and audits it; a changed document or script is a new version.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from django.core.exceptions import ValidationError
from django.db import IntegrityError
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import StrictBool, StrictInt

from accounts.roles import Role
from core import problems
from core.edge import INT_MAX, Text
from core.paging import PageParams, page_of, page_schema
from core.problems import Problem
from installs import library
from installs import workflow as wf
from installs.models import Script, Workflow

from .rest_base import RefusedError, actor, need

router = Router(tags=["library"])

LibraryName = Annotated[Text, Field(min_length=1, max_length=64)]
_LINE = re.compile(r"^line (\d+): (.*)$", re.S)


class WorkflowOut(Schema):
    name: str
    version: int
    description: str
    created_at: datetime
    created_by: str


class WorkflowDetailOut(WorkflowOut):
    document: str = Field(..., description="YAML; its structure is the WorkflowDocument schema.")
    versions: list[int]


class WorkflowIn(Schema):
    document: Text = Field(
        ..., min_length=1, max_length=wf.MAX_DOCUMENT, description="YAML text of a WorkflowDocument."
    )


class WorkflowSavedOut(Schema):
    name: str
    version: int
    new_version: bool = Field(..., description="False: the document was the latest version's, kept as it is.")


class WorkflowCheckOut(Schema):
    ok: bool
    name: str
    methods: list[str]
    stages: int
    tasks: int


class ScriptOut(Schema):
    name: str
    version: int
    description: str
    timeout_s: int
    safe_to_repeat: bool
    created_at: datetime
    created_by: str


class ScriptDetailOut(ScriptOut):
    body: str
    versions: list[int]


class ScriptIn(Schema):
    name: LibraryName
    body: Text = Field(..., min_length=1, max_length=wf.MAX_DOCUMENT)
    description: Text = Field("", max_length=255)
    timeout_s: StrictInt = Field(600, ge=1, le=wf.MAX_TIMEOUT_S)
    safe_to_repeat: StrictBool = False  # not 0 or "no": a script's safety is said, not guessed


class ScriptSavedOut(Schema):
    name: str
    version: int
    new_version: bool


WorkflowPage = page_schema(WorkflowOut, "WorkflowPage")
ScriptPage = page_schema(ScriptOut, "ScriptPage")


class VersionQuery(Schema):
    version: int | None = Field(None, ge=1, le=INT_MAX, description="A version; the latest when left out.")


def _entry(row) -> dict:
    data = {
        "name": row.name,
        "version": row.version,
        "description": row.description,
        "created_at": row.created_at,
        "created_by": row.created_by_label,
    }
    if isinstance(row, Script):
        data.update(timeout_s=row.timeout_s, safe_to_repeat=row.safe_to_repeat)
    return data


def _latest_each(model):
    """The latest version of every name, without the (long) text."""
    text = "document" if model is Workflow else "body"
    return model.objects.order_by("name", "-version").distinct("name").defer(text)


def _version(model, name: str, version: int | None):
    rows = model.objects.filter(name=name)
    row = rows.filter(version=version).first() if version else rows.order_by("-version").first()
    if row is None:
        raise HttpError(404, f"No {model._meta.verbose_name} {name!r}" + (f" version {version}." if version else "."))
    versions = list(rows.order_by("version").values_list("version", flat=True))
    return row, versions


def _invalid_document(exc: wf.WorkflowInvalid):
    """A 400 naming each problem of the document with its line."""
    errors = []
    for message in exc.messages:
        match = _LINE.match(message)
        line, reason = (int(match.group(1)), match.group(2)) if match else (None, message)
        errors.append({"loc": ["body", "body", "document"], "msg": reason, "type": "workflow_invalid", "line": line})
    detail = f"document: {'; '.join(exc.messages)}"
    return problems.response(400, detail, field="document", errors=errors)


def _invalid_fields(exc: ValidationError):
    errors = [
        {"loc": ["body", "body", field], "msg": message, "type": "value_error"}
        for field, messages in exc.message_dict.items()
        for message in messages
    ]
    field = problems.field_of(errors[0]["loc"]) if errors else "body"
    return problems.response(400, f"{field}: {errors[0]['msg'] if errors else exc}", field=field, errors=errors)


def _saved_at_once() -> HttpError:
    return RefusedError(["Another save of this name was made at the same moment; send it again."])


@router.get("workflows", response=WorkflowPage)
def list_workflows(request, params: Query[PageParams]):
    """The latest version of each workflow of the library, by name (the stock workflows are not rows)."""
    need(request, Role.VIEWER)
    return page_of(_latest_each(Workflow), params, _entry)


@router.post("workflows/check", response={200: WorkflowCheckOut, 400: Problem}, operation_id="check_workflow")
def check_workflow(request, body: WorkflowIn):
    """Check a document as saving it would, against the library as it is now; nothing is written."""
    need(request, Role.VIEWER)
    try:
        checked = library.check(body.document)
    except wf.WorkflowInvalid as exc:
        return _invalid_document(exc)
    return {
        "ok": True,
        "name": checked.name,
        "methods": list(checked.methods),
        "stages": len(checked.stages),
        "tasks": sum(1 for _ in checked.tasks()),
    }


@router.get("workflows/{name}", response=WorkflowDetailOut)
def get_workflow(request, name: Path[LibraryName], query: Query[VersionQuery]):
    need(request, Role.VIEWER)
    row, versions = _version(Workflow, name, query.version)
    return {**_entry(row), "document": row.document, "versions": versions}


@router.post("workflows", response={200: WorkflowSavedOut, 201: WorkflowSavedOut, 400: Problem, 409: Problem})
def save_workflow(request, body: WorkflowIn):
    """Check and save a document under the name it gives: 201 with the new version, or 200 when it is the
    latest version's document already. A refused document is a 400 whose ``errors`` give each problem's line."""
    need(request, Role.ADMIN)
    try:
        row, new = library.save_workflow(body.document, actor(request))
    except wf.WorkflowInvalid as exc:
        return _invalid_document(exc)
    except IntegrityError:
        raise _saved_at_once() from None
    return Status(201 if new else 200, {"name": row.name, "version": row.version, "new_version": new})


@router.get("scripts", response=ScriptPage)
def list_scripts(request, params: Query[PageParams]):
    """The latest version of each script, by name; bodies are in each script's own answer."""
    need(request, Role.VIEWER)
    return page_of(_latest_each(Script), params, _entry)


@router.get("scripts/{name}", response=ScriptDetailOut)
def get_script(request, name: Path[LibraryName], query: Query[VersionQuery]):
    need(request, Role.VIEWER)
    row, versions = _version(Script, name, query.version)
    return {**_entry(row), "body": row.body, "versions": versions}


@router.post("scripts", response={200: ScriptSavedOut, 201: ScriptSavedOut, 400: Problem, 409: Problem})
def save_script(request, body: ScriptIn):
    """Save a script: 201 with the new version, or 200 when nothing changed from the latest version."""
    need(request, Role.ADMIN)
    try:
        row, new = library.save_script(
            body.name,
            body.body,
            actor(request),
            description=body.description,
            timeout_s=body.timeout_s,
            safe_to_repeat=body.safe_to_repeat,
        )
    except ValidationError as exc:
        return _invalid_fields(exc)
    except IntegrityError:
        raise _saved_at_once() from None
    return Status(201 if new else 200, {"name": row.name, "version": row.version, "new_version": new})
