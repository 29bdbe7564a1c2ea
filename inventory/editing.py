"""Inventory written outside the Django admin (the REST API): sites, racks and OS profiles. The machines, their
NICs and BMCs are in machine_editing.py, on the helpers here.

Each write is one transaction: the row locked, checked as the admin checks it (the model's full_clean: field
validators, clean(), unique and named constraints), saved, and audited as the admin audits it (the same action
names, ``inventory.<model>.add|change|delete``, the same field diff with secrets only said to have changed).
Invalid input raises ValidationError keyed by the field as the caller spells it (``nics.0.mac``), before
anything is written; a write that inventory as it stands forbids (a rack that still holds machines, a protected
machine) raises EditRefused with each reason.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, models, transaction

from audit.diff import diff, snapshot
from audit.service import Actor, record

from .forms import SiteForm
from .models import OSProfile, Rack, Site

# What the API may write of each; everything else of the row is the system's (commissioning, reachability).
SITE_FIELDS = tuple(SiteForm.Meta.fields)  # what the admin writes of a site (its password aside)
RACK_FIELDS = ("site", "name", "height_u")
PROFILE_FIELDS = (
    "name",
    "description",
    "method",
    "kernel",
    "initrd",
    "kernel_args",
    "template",
    "image_url",
    "image_sha256",
    "target_disk",
    "root_password_hash",
    "ssh_authorized_keys",
    "legacy_anaconda",
    "workflow",
)
_LINE = re.compile(r"\bline (\d+)\b")


class EditRefused(Exception):
    """Inventory as it stands forbids the write (a 409); ``problems`` are the reasons, one sentence each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def at_once() -> EditRefused:
    """Another write got in between our checks and our save; the database's constraints caught it."""
    return EditRefused(["Inventory changed at the same moment (another write); nothing was written: send it again."])


@contextmanager
def at_once_refused():
    """A savepoint around a write whose checks ran first: a constraint the database still trips (another write got
    in between) is an EditRefused saying so, and nothing of the block is written."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError:
        raise at_once() from None


def error_line(message: str) -> int | None:
    """The template line a profile's template error names, if it names one."""
    match = _LINE.search(message)
    return int(match.group(1)) if match else None


# --- shared by every write ----------------------------------------------------------------------------------


def checked(obj: models.Model, *, prefix: str = "", exclude=(), whole: str = "") -> None:
    """The model's full validation of ``obj``; a ValidationError's fields get ``prefix`` (``nics.0.``), and an
    error of the row as a whole (a constraint over several fields) is put on ``whole`` when it is given."""
    try:
        obj.full_clean(exclude=list(exclude))
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for name, messages in exc.message_dict.items():
            if name != NON_FIELD_ERRORS:
                key = f"{prefix}{name}"
            else:
                key = f"{prefix}{whole}" if whole else prefix.rstrip(".") or "body"
            errors.setdefault(key, []).extend(messages)
        raise ValidationError(errors) from None


def saved(obj: models.Model, actor: Actor, before: dict | None, **details) -> models.Model:
    """Save ``obj`` and audit it as the admin does: add (``before`` None) or change, with the field diff. A change
    that changes nothing is not recorded."""
    obj.save()
    changes = diff(before, snapshot(obj))
    if before is not None and not changes and not details:
        return obj
    verb = "add" if before is None else "change"
    record(actor, f"{obj._meta.label_lower}.{verb}", obj, {"changes": changes, **details})
    return obj


def deleted(obj: models.Model, actor: Actor) -> None:
    """Delete ``obj``, its audit entry keeping what it was (as the admin's does)."""
    record(actor, f"{obj._meta.label_lower}.delete", obj, {"was": diff(None, snapshot(obj))})
    try:
        with transaction.atomic():
            obj.delete()
    except models.ProtectedError as exc:
        kinds = sorted({type(row)._meta.verbose_name_plural for row in exc.protected_objects})
        raise EditRefused([f"{obj} is still referred to by {', '.join(kinds)}; nothing was deleted."]) from None


def assign(obj: models.Model, values: dict, allowed: tuple[str, ...]) -> None:
    for name, value in values.items():
        if name not in allowed:
            raise ValidationError({name: "This field cannot be written here."})
        setattr(obj, name, value)


def locked(model, **lookup):
    """The row, locked for this transaction; None when there is none."""
    return model.objects.select_for_update().filter(**lookup).first()


def find_rack(value: str | int | None) -> Rack | None:
    """The rack a form, the API or the command line names: "site/rack" (as the bulk import names it), or its id.
    ValidationError naming the field ``rack`` when there is none such; None for no rack at all."""
    if value in (None, ""):
        return None
    text_value = str(value).strip()
    if text_value.isascii() and text_value.isdigit():
        rack = Rack.objects.select_related("site").filter(pk=int(text_value)).first() if len(text_value) < 19 else None
    else:
        slug, _, name = text_value.partition("/")
        rack = Rack.objects.select_related("site").filter(site__slug=slug, name=name).first() if name else None
    if rack is None:
        problem = f"There is no rack {text_value!r}: name it as site/rack (e.g. dc1/r01) or by its id."
        raise ValidationError({"rack": problem})
    return rack


def _profile_named(name: str | None, field: str) -> OSProfile | None:
    if name in (None, ""):
        return None
    profile = OSProfile.objects.filter(name=name).first()
    if profile is None:
        raise ValidationError({field: f"There is no OS profile {name!r}."})
    return profile


# --- sites ---------------------------------------------------------------------------------------------------


def _site_values(site: Site, values: dict) -> None:
    values = dict(values)
    password = values.pop("bmc_password", None)
    if "memory_os" in values:
        values["memory_os"] = _profile_named(values["memory_os"], "memory_os")
    assign(site, values, SITE_FIELDS)
    if password is not None:
        # Write-only, as the admin's: a password sets it, "" clears it (a BMC of the site then has its own or none).
        if password:
            site.set_bmc_password(password)
        else:
            site.bmc_password_ciphertext = ""


@transaction.atomic(durable=True)
def create_site(values: dict, actor: Actor) -> Site:
    site = Site()
    _site_values(site, values)
    checked(site)
    with at_once_refused():
        return saved(site, actor, None)


@transaction.atomic(durable=True)
def update_site(slug: str, values: dict, actor: Actor) -> Site | None:
    site = locked(Site, slug=slug)
    if site is None:
        return None
    before = snapshot(site)
    _site_values(site, values)
    checked(site)
    return saved(site, actor, before)


@transaction.atomic(durable=True)
def delete_site(slug: str, actor: Actor) -> bool:
    """False when there is no such site. Refused while racks, machines or PDUs are at the site; what belongs to the
    site alone (its jump hosts, SSH settings, discovered machines) goes with it."""
    site = locked(Site, slug=slug)
    if site is None:
        return False
    problems = []
    racks = site.racks.count()
    if racks:
        machines = sum(rack.machines.count() for rack in site.racks.all())
        problems.append(f"Site {slug} has {racks} rack(s) holding {machines} machine(s): delete or move them first.")
    if pdus := site.pdus.count():
        problems.append(f"Site {slug} has {pdus} PDU(s): delete them first.")
    if problems:
        raise EditRefused(problems)
    deleted(site, actor)
    return True


# --- racks ---------------------------------------------------------------------------------------------------


def rack_named(site: str, name: str, *, lock: bool = False) -> Rack | None:
    rows = Rack.objects.select_related("site")
    if lock:
        rows = rows.select_for_update(of=("self",))
    return rows.filter(site__slug=site, name=name).first()


def _check_rack(rack: Rack) -> None:
    checked(rack, whole="name")
    if rack.pk is None:
        return
    too_high = rack.machines.filter(position_u__gt=rack.height_u - models.F("height_u") + 1).order_by("position_u")
    if clash := too_high.first():
        raise ValidationError(
            {
                "height_u": f"{rack.height_u}U is too low: {clash.hostname} occupies "
                f"U{clash.position_u}–U{clash.top_u}."
            }
        )


@transaction.atomic(durable=True)
def create_rack(values: dict, actor: Actor) -> Rack:
    values = dict(values)
    site = Site.objects.filter(slug=values.pop("site", "")).first()
    if site is None:
        raise ValidationError({"site": "There is no such site."})
    rack = Rack(site=site)
    assign(rack, values, RACK_FIELDS)
    _check_rack(rack)
    with at_once_refused():
        return saved(rack, actor, None)


@transaction.atomic(durable=True)
def update_rack(site: str, name: str, values: dict, actor: Actor) -> Rack | None:
    rack = rack_named(site, name, lock=True)
    if rack is None:
        return None
    before = snapshot(rack)
    assign(rack, values, RACK_FIELDS[1:])
    _check_rack(rack)
    return saved(rack, actor, before)


@transaction.atomic(durable=True)
def delete_rack(site: str, name: str, actor: Actor) -> bool:
    rack = rack_named(site, name, lock=True)
    if rack is None:
        return False
    hostnames = list(rack.machines.order_by("position_u").values_list("hostname", flat=True))
    if hostnames:
        shown = ", ".join(hostnames[:20]) + (", ..." if len(hostnames) > 20 else "")
        raise EditRefused([f"Rack {rack} holds {len(hostnames)} machine(s) ({shown}): delete or move them first."])
    deleted(rack, actor)
    return True


# --- OS profiles ---------------------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def create_profile(values: dict, actor: Actor) -> OSProfile:
    profile = OSProfile()
    assign(profile, values, PROFILE_FIELDS)
    checked(profile)
    with at_once_refused():
        return saved(profile, actor, None)


@transaction.atomic(durable=True)
def update_profile(name: str, values: dict, actor: Actor) -> OSProfile | None:
    profile = locked(OSProfile, name=name)
    if profile is None:
        return None
    before = snapshot(profile)
    assign(profile, values, PROFILE_FIELDS)
    checked(profile)
    with at_once_refused():
        return saved(profile, actor, before)


@transaction.atomic(durable=True)
def delete_profile(name: str, actor: Actor) -> bool:
    """Refused while installs name it (an unfinished one uses it; a finished one keeps it in the machine's
    history, which is never deleted) or a site boots it as its memory OS."""
    profile = locked(OSProfile, name=name)
    if profile is None:
        return False
    problems = []
    running = profile.installs.filter(finished_at__isnull=True).count()
    if running:
        problems.append(f"{running} install(s) not finished use profile {name}.")
    if finished := profile.installs.filter(finished_at__isnull=False).count():
        problems.append(f"{finished} finished install(s) keep profile {name} in their history.")
    sites = list(Site.objects.filter(memory_os=profile).values_list("slug", flat=True))
    if sites:
        problems.append(f"Site(s) {', '.join(sites)} boot profile {name} as their memory OS.")
    if problems:
        raise EditRefused(problems)
    deleted(profile, actor)
    return True
