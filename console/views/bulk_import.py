"""The Import page (admins): upload a machines file, see what each row would create or change and every problem
with its row and column, then apply. Apply sends the same file again: its SHA-256 must be the previewed one, and
planning again must give the same plan, so what is written is what was shown. The file (and the BMC passwords in
it) is kept nowhere between the two requests."""

from __future__ import annotations

import hashlib

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.roles import Role, require_role
from audit.service import Actor
from inventory import import_format, importing

EXTENSION_FORMATS = {"csv": "csv", "json": "json", "yaml": "yaml", "yml": "yaml"}


@require_http_methods(["GET", "POST"])
@require_role(Role.ADMIN)
def machine_import(request):
    context = {"section": "machines", "columns": import_format.COLUMNS}
    if request.method == "GET":
        return render(request, "inventory/machine_import.html", context)
    upload = request.FILES.get("file")
    create_racks = request.POST.get("create_racks") == "1"
    context["create_racks"] = create_racks
    if upload is None:
        context["error"] = "Choose a file to import."
        return render(request, "inventory/machine_import.html", context, status=400)
    if upload.size > import_format.MAX_BYTES:
        context["error"] = f"The file is larger than {import_format.MAX_BYTES // (1024 * 1024)} MiB."
        return render(request, "inventory/machine_import.html", context, status=400)
    data = upload.read()
    sha256 = hashlib.sha256(data).hexdigest()
    file_format = EXTENSION_FORMATS.get(upload.name.rpartition(".")[2].lower(), "csv")
    context.update({"filename": upload.name, "sha256": sha256})
    applying = request.POST.get("apply") == "1"
    try:
        if applying:
            if request.POST.get("sha256") != sha256:
                context["error"] = "This is not the file that was previewed: preview it first."
                result = importing.plan(data, file_format, create_racks=create_racks)
            else:
                result = importing.apply(
                    data,
                    file_format,
                    actor=Actor.for_user(request.user),
                    create_racks=create_racks,
                    expect=request.POST.get("digest", ""),
                )
                messages.success(
                    request,
                    f"Imported {upload.name}: {result.count('create')} created, {result.count('change')} changed, "
                    f"{result.count('unchanged')} unchanged.",
                )
                return redirect("inventory:machine-list")
        else:
            result = importing.plan(data, file_format, create_racks=create_racks)
    except import_format.FileRefused as exc:
        context["error"] = f"{upload.name} cannot be read: {exc}."
        return render(request, "inventory/machine_import.html", context, status=400)
    except importing.ImportRefused as exc:
        context["error"] = f"Nothing was imported: {exc}."
        result = exc.plan
    context.update(_preview(result))
    return render(request, "inventory/machine_import.html", context, status=400 if "error" in context else 200)


def _preview(result: importing.Plan) -> dict:
    """Rows to show: those with a change or a problem (unchanged ones are counted), each with its problems."""
    by_row: dict[int, list] = {}
    for problem in result.problems:
        by_row.setdefault(problem.row, []).append(problem)
    shown = [
        {"plan": row, "problems": by_row.get(row.row, []), "columns": {p.column for p in by_row.get(row.row, [])}}
        for row in result.rows
        if row.action != "unchanged" or row.row in by_row
    ]
    listed = {row.row for row in result.rows}
    return {
        "plan": result,
        "shown": shown,
        "file_problems": [p for p in result.problems if p.row not in listed],
        "counts": {a: result.count(a) for a in ("create", "change", "unchanged")},
    }
