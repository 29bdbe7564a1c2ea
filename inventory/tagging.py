"""Tags on machines (tag_model.py): reading names as people type them, setting one machine's tags, adding or
removing a tag on many machines at once, and writing tags themselves.

A name is taken in any case and stored lower-case; a list of names may be separated by spaces, commas or
semicolons (the import's ``tags`` cell, the machine page's field). Assigning a tag that does not exist yet
creates it, as MAAS does: tags are free-form, and the audit entry says which were new. Each change of a machine's
tags is one audit entry (``inventory.machine.tags``) listing what was added and removed; a bulk change is one
entry (``inventory.machine.bulk_tags``) listing the machines.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.diff import diff, snapshot
from audit.service import Actor, record

from .editing import assign, at_once_refused, checked, locked, saved
from .models import Machine, Tag
from .tag_model import TAG_NAME_MAX, validate_tag_name

TAG_FIELDS = ("name", "colour", "description")
#: Tags one machine may carry, and names one request may list: far beyond use, a bound on what a request writes.
MAX_TAGS = 50
_SEPARATORS = re.compile(r"[\s,;]+")
Through = Machine.tags.through


def parse(value, field: str = "tags") -> list[str]:
    """Tag names from text ("gpu fast", "gpu; fast") or a list of names: lower-cased, each once, in the order
    given. ValidationError naming ``field`` with every name that is not one."""
    parts = _SEPARATORS.split(value) if isinstance(value, str) else [str(v) for v in value]
    names = list(dict.fromkeys(p.strip().lower() for p in parts if p and p.strip()))
    bad = []
    for name in names:
        try:
            validate_tag_name(name)
        except ValidationError:
            bad.append(name[: TAG_NAME_MAX + 10])
    if bad:
        raise ValidationError({field: f"Not a tag name: {', '.join(bad[:10])}. {validate_tag_name.message}"})
    if len(names) > MAX_TAGS:
        raise ValidationError({field: f"{len(names)} tags; at most {MAX_TAGS} are taken at once."})
    return names


def text(names) -> str:
    """Names as one cell of the import file and the CSV export: sorted, space-separated (parse reads it back)."""
    return " ".join(sorted(names))


def tags_named(names: list[str]) -> tuple[dict[str, Tag], list[str]]:
    """The Tag rows for ``names``, those missing created: ({name: tag}, the names created)."""
    found = {t.name: t for t in Tag.objects.filter(name__in=names)}
    new = [n for n in names if n not in found]
    if new:
        Tag.objects.bulk_create([Tag(name=n) for n in new], ignore_conflicts=True)
        found = {t.name: t for t in Tag.objects.filter(name__in=names)}
    return found, new


def record_change(actor: Actor, machine: Machine, added, removed, created=()) -> None:
    """The one audit entry for a change of ``machine``'s tags; nothing when nothing changed."""
    if not added and not removed:
        return
    details = {"added": sorted(added), "removed": sorted(removed)}
    if created:
        details["created"] = sorted(created)
    record(actor, "inventory.machine.tags", machine, details)


def apply(machine: Machine, names: list[str], actor: Actor) -> None:
    """Give ``machine`` (saved, locked by the caller's transaction) exactly the tags ``names``, audited."""
    current = set(machine.tags.values_list("name", flat=True))
    wanted = set(names)
    added, removed = wanted - current, current - wanted
    tags, created = tags_named(sorted(added))
    if added:
        Through.objects.bulk_create([Through(machine_id=machine.pk, tag_id=tags[n].pk) for n in added])
    if removed:
        Through.objects.filter(machine_id=machine.pk, tag__name__in=removed).delete()
    record_change(actor, machine, added, removed, created)


@transaction.atomic(durable=True)
def set_machine_tags(hostname: str, names: list[str], actor: Actor) -> Machine | None:
    """``hostname``'s tags become ``names`` (already parsed); None when there is no such machine."""
    machine = Machine.objects.select_for_update(of=("self",)).filter(hostname=hostname).first()
    if machine is None:
        return None
    apply(machine, names, actor)
    return machine


@transaction.atomic(durable=True)
def change_tags(machine_ids, actor: Actor, *, add: list[str] = (), remove: list[str] = ()) -> list[str]:
    """Add the tags ``add`` to the machines and take ``remove`` off them: one audit entry listing the machines
    whose tags changed (their hostnames are returned). A name both added and removed is refused."""
    both = set(add) & set(remove)
    if both:
        raise ValidationError({"tag": f"{', '.join(sorted(both))} is both added and removed."})
    machines = list(Machine.objects.select_for_update().filter(pk__in=list(machine_ids)).order_by("pk"))
    ids = [m.pk for m in machines]
    have = set(Through.objects.filter(machine_id__in=ids).values_list("machine_id", "tag__name"))
    tags, created = tags_named(list(add))
    new = [(m.pk, n) for m in machines for n in add if (m.pk, n) not in have]
    Through.objects.bulk_create([Through(machine_id=pk, tag_id=tags[n].pk) for pk, n in new])
    gone = {(pk, n) for pk, n in have if n in set(remove)}
    if gone:
        Through.objects.filter(machine_id__in=ids, tag__name__in=list(remove)).delete()
    touched = {pk for pk, _ in new} | {pk for pk, _ in gone}
    hostnames = [m.hostname for m in machines if m.pk in touched]
    if hostnames:
        details = {"added": sorted(add), "removed": sorted(remove), "machines": hostnames}
        if created:
            details["created"] = sorted(created)
        verbs = " ".join([*(f"+{n}" for n in sorted(add)), *(f"-{n}" for n in sorted(remove))])
        record(actor, "inventory.machine.bulk_tags", None, details, object_label=f"tags {verbs} on "
               f"{len(hostnames)} machine(s)")  # fmt: skip
    return hostnames


# --- tags themselves -------------------------------------------------------------------------------------------


def _written(tag: Tag, values: dict, actor: Actor, before: dict | None) -> Tag:
    values = dict(values)
    if isinstance(values.get("name"), str):
        values["name"] = values["name"].strip().lower()
    assign(tag, values, TAG_FIELDS)
    checked(tag)
    with at_once_refused():
        return saved(tag, actor, before)


@transaction.atomic(durable=True)
def create_tag(values: dict, actor: Actor) -> Tag:
    return _written(Tag(), values, actor, None)


@transaction.atomic(durable=True)
def update_tag(name: str, values: dict, actor: Actor) -> Tag | None:
    """Rename it (its machines keep it), recolour it, describe it."""
    tag = locked(Tag, name=name)
    return None if tag is None else _written(tag, values, actor, snapshot(tag))


@transaction.atomic(durable=True)
def delete_tag(name: str, actor: Actor) -> bool:
    """Off every machine that has it; the audit entry names them. False when there is no such tag."""
    tag = locked(Tag, name=name)
    if tag is None:
        return False
    hostnames = sorted(tag.machines.values_list("hostname", flat=True))
    record(actor, "inventory.tag.delete", tag, {"was": diff(None, snapshot(tag)), "machines": hostnames})
    tag.delete()
    return True
