"""A person's own choices on the list pages: saved views of the install list's filters, and the machine list's
columns (accounts/preferences.py stores them). Any role that reads the list may keep its own; a refusal is a 400
that names the field, and writes nothing."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponseBadRequest, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts import preferences
from accounts.preferences import PageName, PreferenceRefused
from accounts.roles import Role, require_role
from audit.service import Actor
from console.columns import MACHINE_COLUMN_KEYS
from console.install_filters import InstallQuery


def _refused(exc: PreferenceRefused):
    return HttpResponseBadRequest(f"{exc.field}: {exc}", content_type="text/plain; charset=utf-8")


@require_POST
@require_role(Role.VIEWER)
def install_view_save(request):
    """Save the filters the list showed (its ``query``, checked as the list checks it) under ``name``."""
    query = InstallQuery.from_params(QueryDict(request.POST.get("query", "")))
    if problems := query.problems():
        field, problem = next(iter(problems.items()))
        return HttpResponseBadRequest(f"query: filter {field}: {problem}", content_type="text/plain; charset=utf-8")
    try:
        view = preferences.save_view(
            request.user,
            PageName.INSTALLS,
            request.POST.get("name", ""),
            query.query_string(),
            actor=Actor.for_user(request.user),
        )
    except PreferenceRefused as exc:
        return _refused(exc)
    messages.success(request, f"Saved the view “{view.name}”.")
    return redirect(f"{reverse('install-list')}?{view.query}")


@require_POST
@require_role(Role.VIEWER)
def install_view_delete(request, view_id: int):
    try:
        view = preferences.delete_view(request.user, view_id, actor=Actor.for_user(request.user))
    except preferences.SavedView.DoesNotExist:
        raise Http404("No such saved view of yours.") from None
    messages.success(request, f"Deleted the view “{view.name}”.")
    return redirect("install-list")


@require_POST
@require_role(Role.VIEWER)
def machine_columns(request):
    """Show the ticked columns on the machine list, from now on, wherever this person logs in."""
    try:
        preferences.set_columns(
            request.user,
            PageName.MACHINES,
            request.POST.getlist("column"),
            allowed=MACHINE_COLUMN_KEYS,
            actor=Actor.for_user(request.user),
        )
    except PreferenceRefused as exc:
        return _refused(exc)
    back = request.POST.get("next", "")
    # Only the machine list itself, with its filters: never a page elsewhere.
    if not back.startswith(reverse("inventory:machine-list")):
        back = reverse("inventory:machine-list")
    return redirect(back)
