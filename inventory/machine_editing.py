"""Machines, their NICs and their BMC written outside the Django admin (the REST API), on editing.py's rules: one
transaction, the row locked, the model's own checks before any write (a ValidationError keyed by the field as the
caller spells it), audited as the admin audits (``inventory.machine.add``, ``inventory.nic.change``, ...; a BMC
password only ever "changed"), EditRefused with the reasons when inventory forbids it.

A MAC is taken in any common notation and stored as aa:bb:cc:dd:ee:ff (inventory/validators.py); it belongs to
one NIC; a machine boots from one PXE NIC (the named constraint). A BMC password is write-only.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.diff import snapshot
from audit.service import Actor

from . import tagging
from .editing import EditRefused, assign, at_once_refused, checked, deleted, find_rack, saved
from .models import BMC, NIC, Machine
from .validators import normalise_mac

MACHINE_FIELDS = ("hostname", "rack", "position_u", "height_u", "depth", "serial", "vendor", "model", "boot_mode")
NIC_FIELDS = ("name", "mac", "is_pxe", "ip", "prefix_len", "gateway", "vlan")
BMC_FIELDS = ("driver", "address", "port", "username")


def _machine(hostname: str) -> Machine | None:
    rows = Machine.objects.select_for_update(of=("self",)).select_related("rack__site")
    return rows.filter(hostname=hostname).first()


def _place(machine: Machine, values: dict) -> None:
    values = dict(values)
    if "rack" in values:
        values["rack"] = find_rack(values["rack"])
        if values["rack"] is None and "position_u" not in values:
            values["position_u"] = None  # unracked: no position either
    if isinstance(values.get("hostname"), str):
        values["hostname"] = values["hostname"].strip().lower()
    assign(machine, values, MACHINE_FIELDS)


# --- machines ------------------------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def create_machine(values: dict, actor: Actor, *, nics: list[dict] = (), bmc: dict | None = None) -> Machine:
    """A machine with its NICs, BMC and tags, all checked before the first is written."""
    values = dict(values)
    tags = tagging.parse(values.pop("tags")) if values.get("tags") is not None else []
    machine = Machine()
    _place(machine, values)
    checked(machine)
    new_nics = [_nic(NIC(), spec, prefix=f"nics.{i}.") for i, spec in enumerate(nics)]
    _one_each(new_nics)
    new_bmc = _bmc(BMC(), bmc, prefix="bmc.") if bmc is not None else None
    with at_once_refused():
        saved(machine, actor, None)
        for nic in new_nics:
            nic.machine = machine
            saved(nic, actor, None)
        if new_bmc is not None:
            new_bmc.machine = machine
            saved(new_bmc, actor, None)
        tagging.apply(machine, tags, actor)
    return machine


@transaction.atomic(durable=True)
def update_machine(hostname: str, values: dict, actor: Actor) -> Machine | None:
    values = dict(values)
    tags = tagging.parse(values.pop("tags")) if values.get("tags") is not None else None
    machine = _machine(hostname)
    if machine is None:
        return None
    before = snapshot(machine)
    _place(machine, values)
    checked(machine)
    with at_once_refused():
        saved(machine, actor, before)
        if tags is not None:
            tagging.apply(machine, tags, actor)
        return machine


@transaction.atomic(durable=True)
def delete_machine(hostname: str, actor: Actor) -> bool:
    """Refused while protected, while an install runs on it, and while installs are in its history (they are kept
    with the machine they ran on, as the admin keeps them). Its NICs, BMC, facts and alerts go with it; the audit
    log keeps what it was."""
    machine = _machine(hostname)
    if machine is None:
        return False
    problems = []
    if machine.protected:
        problems.append(f"{hostname} is protected: unprotect it with a reason first if this is intended.")
    if machine.installs.filter(finished_at__isnull=True).exists():
        problems.append(f"An install is running on {hostname}: cancel it first.")
    elif count := machine.installs.count():
        problems.append(f"{hostname} has {count} install(s) in its history, which is never deleted.")
    if problems:
        raise EditRefused(problems)
    deleted(machine, actor)
    return True


# --- NICs ----------------------------------------------------------------------------------------------------


def _nic(nic: NIC, values: dict, *, prefix: str = "") -> NIC:
    values = dict(values)
    if values.get("mac") is not None:
        try:
            values["mac"] = normalise_mac(values["mac"])
        except ValidationError as exc:
            raise ValidationError({f"{prefix}mac": exc.messages}) from None
    assign(nic, values, NIC_FIELDS)
    other = NIC.objects.filter(mac=nic.mac).exclude(pk=nic.pk).select_related("machine").first()
    if other is not None:  # before the constraint's own check, whose message does not say whose it is
        raise ValidationError({f"{prefix}mac": f"{nic.mac} is already a NIC of {other.machine.hostname}."})
    # The machine may not exist yet: its constraints (one PXE NIC) are checked by the caller then.
    checked(nic, prefix=prefix, exclude=() if nic.machine_id else ("machine",), whole="is_pxe")
    return nic


def _one_each(nics: list[NIC]) -> None:
    """The NICs of one new machine: each MAC once, at most one PXE NIC."""
    seen: dict[str, int] = {}
    for i, nic in enumerate(nics):
        if nic.mac in seen:
            raise ValidationError({f"nics.{i}.mac": f"{nic.mac} is listed twice (nics.{seen[nic.mac]})."})
        seen[nic.mac] = i
    pxe = [i for i, nic in enumerate(nics) if nic.is_pxe]
    if len(pxe) > 1:
        raise ValidationError({f"nics.{pxe[1]}.is_pxe": "More than one NIC is the PXE NIC; a machine boots from one."})


def nic_of(machine: Machine, key: str, *, lock: bool = False) -> NIC:
    """The machine's NIC with the MAC ``key`` (any notation), or else the name ``key``; ValidationError when
    the name is on several of its NICs, NIC.DoesNotExist when on none."""
    rows = machine.nics.select_for_update() if lock else machine.nics.all()
    try:
        return rows.get(mac=normalise_mac(key))
    except (ValidationError, NIC.DoesNotExist):
        pass
    named = list(rows.filter(name=key)[:2])
    if len(named) > 1:
        raise ValidationError({"nic": f"{machine.hostname} has several NICs named {key!r}: name it by its MAC."})
    if not named:
        raise NIC.DoesNotExist(f"{machine.hostname} has no NIC with the MAC or name {key!r}.")
    return named[0]


@transaction.atomic(durable=True)
def add_nic(hostname: str, values: dict, actor: Actor) -> NIC | None:
    machine = _machine(hostname)
    if machine is None:
        return None
    nic = _nic(NIC(machine=machine), values)
    with at_once_refused():
        return saved(nic, actor, None)


@transaction.atomic(durable=True)
def update_nic(hostname: str, key: str, values: dict, actor: Actor) -> NIC | None:
    machine = _machine(hostname)
    if machine is None:
        return None
    nic = nic_of(machine, key, lock=True)
    before = snapshot(nic)
    _nic(nic, values)
    with at_once_refused():
        return saved(nic, actor, before)


@transaction.atomic(durable=True)
def delete_nic(hostname: str, key: str, actor: Actor) -> bool:
    machine = _machine(hostname)
    if machine is None:
        return False
    deleted(nic_of(machine, key, lock=True), actor)
    return True


# --- the BMC -------------------------------------------------------------------------------------------------


def _bmc(bmc: BMC, values: dict, *, prefix: str = "") -> BMC:
    values = dict(values)
    password = values.pop("password", None)
    assign(bmc, values, BMC_FIELDS)
    checked(bmc, prefix=prefix, exclude=() if bmc.machine_id else ("machine",))
    if password is not None:
        # Write-only: a password sets it (encrypted), "" clears it (the site's default is used then).
        if password:
            bmc.set_password(password)
        else:
            bmc.password_ciphertext = ""
    return bmc


@transaction.atomic(durable=True)
def write_bmc(hostname: str, values: dict, actor: Actor, *, replace: bool) -> tuple[BMC, bool] | None:
    """Set the machine's BMC: ``replace`` (PUT) makes it what ``values`` say, fields left out at their defaults
    (the password kept unless given); otherwise (PATCH) changes the fields given of the BMC it has. Returns the
    BMC and whether it was made; None for no such machine; BMC.DoesNotExist for a PATCH of a machine without one."""
    machine = _machine(hostname)
    if machine is None:
        return None
    bmc = BMC.objects.select_for_update().filter(machine=machine).first()
    if bmc is None and not replace:
        raise BMC.DoesNotExist(f"{hostname} has no BMC: PUT one.")
    created = bmc is None
    before = None if created else snapshot(bmc)
    bmc = bmc or BMC(machine=machine)
    if replace:
        defaults = {f.name: f.get_default() for f in BMC._meta.concrete_fields if f.name in BMC_FIELDS}
        values = {**defaults, **values}
    _bmc(bmc, values)
    return saved(bmc, actor, before), created
