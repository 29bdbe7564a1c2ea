"""REST for the machine import and export (added to the v1 API by console/rest.py), for admins: the same plan,
apply and file format as the Import page and ``manage.py import_machines`` (inventory/importing.py)."""

from __future__ import annotations

from django.http import HttpResponse
from ninja import Query, Router, Schema
from ninja.errors import HttpError

from accounts.roles import Role, has_role
from audit.service import Actor
from core import problems
from inventory import import_format, importing

router = Router(tags=["import"])

# The body's Content-Type names its format.
MEDIA_FORMATS = {
    "text/csv": "csv",
    "application/json": "json",
    "application/yaml": "yaml",
    "application/x-yaml": "yaml",
    "text/yaml": "yaml",
}
EXPORT_MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json", "yaml": "application/yaml"}


class ImportParams(Schema):
    dry_run: bool = False
    create_racks: bool = False


class ExportParams(Schema):
    format: str = "csv"


_BODY = {
    "requestBody": {
        "required": True,
        "description": "One row per machine (README, Bulk import). BMC passwords are write-only.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    }
}


def _need_admin(request) -> None:
    if not has_role(request.auth, Role.ADMIN):
        raise HttpError(403, f"This needs the {Role.ADMIN.label} role.")


@router.post("import/machines", openapi_extra=_BODY, response={200: dict, 400: problems.Problem})
def import_machines(request, params: Query[ImportParams]):
    """With dry_run=1 the preview: what each row would create or change. Without, the import itself. A file with
    problems is a 400 whose ``errors`` name each problem's row and column, and nothing is written."""
    _need_admin(request)
    media = (request.content_type or "").split(";", 1)[0].strip().lower()
    if media not in MEDIA_FORMATS:
        shown = media[:100] or "none"
        return problems.response(
            415, f"Send the file as text/csv, application/json or application/yaml (this was {shown}).", field="body"
        )
    file_format = MEDIA_FORMATS[media]
    try:
        if params.dry_run:
            result = importing.plan(request.body, file_format, create_racks=params.create_racks)
            if not result.ok:
                raise importing.ImportRefused(result, f"the file has {len(result.problems)} problem(s)")
            return importing.summary(result)
        result = importing.apply(
            request.body, file_format, actor=Actor.for_user(request.auth), create_racks=params.create_racks
        )
    except import_format.FileRefused as exc:
        return problems.response(400, f"The file cannot be read: {exc}.", field="body")
    except importing.ImportRefused as exc:
        errors = [
            {"loc": ["body", f"row {p.row}", p.column], "msg": p.message, "type": "value_error"}
            for p in exc.plan.problems
        ]
        return problems.response(400, f"Nothing was imported: {exc}.", field="body", errors=errors)
    return importing.summary(result)


@router.get("export/machines", operation_id="export_machines")
def export_machines(request, params: Query[ExportParams]):
    """Every machine in the import format (BMC passwords blank), so export, edit, import round-trips."""
    _need_admin(request)
    if params.format not in EXPORT_MEDIA:
        raise HttpError(400, f"format must be one of {', '.join(EXPORT_MEDIA)}")
    text = import_format.write(importing.export_rows(), params.format)
    response = HttpResponse(text, content_type=EXPORT_MEDIA[params.format])
    response["Content-Disposition"] = f'attachment; filename="machines.{params.format}"'
    return response
