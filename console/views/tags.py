"""Tags on the machine pages: the list's tag filter and chips, its bulk add/remove of a tag, "every machine with
tag X" as the bulk action's selection, and the machine page's tag field.

Writing tags is the admin's, as every inventory write is (accounts/roles.py; the admin site, the REST API); a
technician may pick the machines of a tag for an action, which is the action's role.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.roles import Role, has_role, require_role
from audit.service import Actor
from console.filters import MachineQuery, machine_queryset
from core.edge import int_param
from inventory import tagging
from inventory.models import Machine, Tag

#: Machines one request may name by id (the list's largest page is far below).
MAX_SELECTED = 5000


def list_context(query: MachineQuery) -> dict:
    """What the machine list shows of tags: every tag for the filter and the bulk fields."""
    return {"all_tags": list(Tag.objects.only("name", "colour")), "tag_filter": query.tag}


def detail_context(machine: Machine, user) -> dict:
    tags = list(machine.tags.all())
    return {
        "machine_tags": tags,
        "machine_tags_text": tagging.text(t.name for t in tags),
        "can_edit_tags": has_role(user, Role.ADMIN),
        "all_tags": list(Tag.objects.only("name")) if has_role(user, Role.ADMIN) else [],
    }


def selected(post):
    """The machines a bulk form names: every machine with the tag ``with_tag`` when one is chosen, else those
    checked (``machine``, by id). A name that is no tag selects none."""
    with_tag = post.get("with_tag", "").strip().lower()
    if with_tag:
        return machine_queryset(MachineQuery(tag=(with_tag,)))
    ids = [n for i in post.getlist("machine")[:MAX_SELECTED] if (n := int_param(i)) is not None]
    return machine_queryset(MachineQuery()).filter(pk__in=ids)


def _back(request) -> str:
    back = request.POST.get("next") or reverse("inventory:machine-list")
    return back if back.startswith("/") and not back.startswith("//") else reverse("inventory:machine-list")


@require_POST
@require_role(Role.ADMIN)
def machine_tags(request, hostname: str):
    """The machine's tags become those typed (spaces, commas or semicolons between them); new names are created."""
    try:
        names = tagging.parse(request.POST.get("tags", "")[:5000])
        machine = tagging.set_machine_tags(hostname, names, Actor.for_user(request.user))
    except ValidationError as exc:
        for problem in exc.messages:
            messages.error(request, f"Tags: {problem}")
        return redirect("inventory:machine-detail", hostname=hostname)
    if machine is None:
        messages.error(request, f"No machine {hostname}.")
        return redirect("inventory:machine-list")
    messages.success(request, f"{hostname}'s tags: {tagging.text(names) or 'none'}.")
    return redirect("inventory:machine-detail", hostname=hostname)


@require_POST
@require_role(Role.ADMIN)
def machine_tags_bulk(request):
    """Add a tag to (``tag_op`` add) or take it off (remove) the checked machines, audited once."""
    op = request.POST.get("tag_op", "")
    back = _back(request)
    try:
        names = tagging.parse(request.POST.get("tag", "")[:5000], "tag")
        if op not in ("add", "remove"):
            raise ValidationError({"tag_op": "Choose add or remove."})
        if not names:
            raise ValidationError({"tag": "Type the tag to add or remove."})
        ids = list(selected(request.POST).values_list("pk", flat=True))
        if not ids:
            raise ValidationError({"machine": "No machines were selected."})
        change = {"add": names} if op == "add" else {"remove": names}
        hostnames = tagging.change_tags(ids, Actor.for_user(request.user), **change)
    except ValidationError as exc:
        for problem in exc.messages:
            messages.error(request, problem)
        return redirect(back)
    said = tagging.text(names)
    if not hostnames:
        messages.info(request, f"Nothing changed: the machines already {'had' if op == 'add' else 'lacked'} {said}.")
    else:
        verb = "added to" if op == "add" else "removed from"
        messages.success(request, f"Tag {said} {verb} {len(hostnames)} machine(s).")
    return redirect(back)
