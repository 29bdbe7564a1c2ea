"""Bulk import of machines with their rack place, NICs and BMC: ``plan`` (read-only: what each row would create or
change, and every problem with its row and column) and ``apply`` (all of it in one transaction, one audit entry,
or nothing). The file format is inventory/import_format.py; ``export_rows`` writes the same format back.

Field checks are the models' own (clean_fields, NIC.clean); what needs the whole file is checked here, against
inventory and the other rows at once: hostnames and MACs taken twice, machines overlapping in a rack, rows that
would move a machine to another rack. The plan is made again inside ``apply``'s transaction, so what is written is
what was checked then, and the database's constraints stand behind it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audit.service import Actor, record

from . import import_format as fmt
from . import tagging
from .models import BMC, NIC, OPPOSITE_HALF, Depth, Machine, Rack, Site, u_span

MACHINE_FIELDS = ("position_u", "height_u", "depth", "serial", "vendor", "model")
# A rack the file names that does not exist, made when the import says so, is this high.
NEW_RACK_HEIGHT_U = 42
PASSWORD_SET = "(new password)"  # what a preview shows for a password in the file: never the password


@dataclass(frozen=True)
class Problem:
    row: int
    column: str
    message: str


@dataclass
class RowPlan:
    row: int
    hostname: str
    action: str = "create"  # create, change or unchanged
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)  # column -> (old, new), as text
    problems: list[Problem] = field(default_factory=list)
    # What apply writes, kept from checking.
    machine: Machine | None = None  # checked values (unsaved)
    current: Machine | None = None  # the machine in inventory, for a change
    rack_key: tuple[str, str] | None = None
    given: frozenset[str] = frozenset()  # the columns the row has
    placement_given: bool = False
    nics: list[fmt.NicSpec] | None = None  # None: NICs left as they are
    bmc: dict | None = None  # None: left alone; {}: no BMC
    password: str = ""
    tags: list[str] | None = None  # None: tags left as they are


@dataclass
class Plan:
    rows: list[RowPlan]
    problems: list[Problem]  # every problem, file-level ones first, by row
    create_racks: bool
    new_racks: list[tuple[str, str]]
    digest: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r.action == action)


class ImportRefused(Exception):
    def __init__(self, plan: Plan, message: str = ""):
        super().__init__(message or f"the file has {len(plan.problems)} problem(s); nothing was written")
        self.plan = plan


def plan(data: bytes | str, file_format: str = "csv", *, create_racks: bool = False) -> Plan:
    """What importing the file would do. FileRefused when it cannot be read as rows at all."""
    parsed = fmt.read(data, file_format)
    file_problems = [Problem(*p) for p in parsed.problems]
    rows = [_check_row(number, values) for number, values in parsed.rows if values]
    by_row = {r.row: r for r in rows}
    for p in file_problems:
        if p.row in by_row:
            by_row[p.row].problems.append(p)
    new_racks = _check_against_inventory(rows, create_racks)
    problems = [p for p in file_problems if p.row not in by_row] + [p for r in rows for p in r.problems]
    problems.sort(key=lambda p: p.row)
    result = Plan(rows, problems, create_racks, sorted(new_racks))
    result.digest = _digest(result)
    return result


def summary(result: Plan) -> dict:
    """The preview as data (the API's answer, the CLI's JSON): counts, each row's action and changes, every
    problem. A password in the file shows as PASSWORD_SET."""
    return {
        "ok": result.ok,
        "digest": result.digest,
        "created": result.count("create"),
        "changed": result.count("change"),
        "unchanged": result.count("unchanged"),
        "racks_to_create": ["/".join(k) for k in result.new_racks],
        "rows": [
            {
                "row": r.row,
                "hostname": r.hostname,
                "action": r.action,
                "changes": {column: {"old": old, "new": new} for column, (old, new) in r.changes.items()},
            }
            for r in result.rows
        ],
        "problems": [{"row": p.row, "column": p.column, "message": p.message} for p in result.problems],
    }


def _digest(result: Plan) -> str:
    """Names one plan: the apply a preview offers goes ahead only if planning again gives the same."""
    text = repr([(r.row, r.hostname, r.action, sorted(r.changes.items())) for r in result.rows])
    return hashlib.sha256(f"{text}{result.new_racks}{[str(p) for p in result.problems]}".encode()).hexdigest()


def _check_row(number: int, values: dict[str, str]) -> RowPlan:
    hostname = values.get("hostname", "").strip().lower()
    row = RowPlan(number, hostname, given=frozenset(values))

    def problem(column: str, message: str) -> None:
        row.problems.append(Problem(number, column, message))

    if not hostname:
        problem("hostname", "the hostname is missing (it is required)")
    machine = Machine(hostname=hostname or "x", **{f: values[f] or None for f in MACHINE_FIELDS if f in values})
    for text_field in ("serial", "vendor", "model"):
        if text_field in values:
            setattr(machine, text_field, values[text_field])
    if "height_u" in values and not values["height_u"]:
        machine.height_u = 1
    if "depth" in values:
        machine.depth = values["depth"].strip().lower() or Depth.FULL
    for name, message in _model_errors(machine):
        problem(name, message)
    if isinstance(machine.position_u, int) and machine.position_u < 1:
        problem("position_u", "the lowest U is 1")
    row.machine = machine
    if "rack" in values or "position_u" in values:
        row.placement_given = True
        rack, site = values.get("rack", ""), values.get("site", "")
        if rack and not site:
            problem("site", f"rack “{rack}” needs its site (rack names are unique per site)")
        elif rack:
            row.rack_key = (site, rack)
        if bool(rack) != (machine.position_u is not None) and not row.problems:
            problem("position_u" if rack else "rack", "a rack and a position go together (give both, or neither)")
    if "nics" in values:
        row.nics = _check_nics(values["nics"], problem)
    if any(c in values for c in fmt.BMC_COLUMNS):
        row.bmc, row.password = _check_bmc(values, problem)
    if "tags" in values:
        try:
            row.tags = tagging.parse(values["tags"])
        except ValidationError as exc:
            problem("tags", exc.message_dict["tags"][0])
    return row


def _model_errors(instance) -> list[tuple[str, str]]:
    """The model's own field checks of what the import writes: (field, message) for each error."""
    try:
        instance.clean_fields(exclude=list(_ignored(instance)))
    except ValidationError as exc:
        return [(name, message) for name, messages in exc.message_dict.items() for message in messages]
    return []


def _ignored(instance) -> set[str]:
    """Fields the import does not write (commissioning's, secrets, state): not checked either."""
    written = {
        Machine: {"hostname", *MACHINE_FIELDS},
        NIC: {"name", "mac", "ip", "prefix_len"},
        BMC: {"driver", "address", "port", "username"},
    }[type(instance)]
    return {f.name for f in instance._meta.concrete_fields} - written


def _check_nics(cell: str, problem) -> list[fmt.NicSpec]:
    specs, seen = [], set()
    for entry in fmt.nic_entries(cell):
        try:
            name, mac, ip, prefix, is_pxe = fmt.parse_nic(entry)
        except fmt.NicSyntaxError as exc:
            problem("nics", str(exc))
            continue
        nic = NIC(name=name, mac=mac, ip=ip or None, prefix_len=prefix, is_pxe=is_pxe)
        label = f"NIC “{entry}”: "
        found = [label + message for _, message in _model_errors(nic)]
        if not found:
            try:
                nic.clean()
            except ValidationError as exc:
                found.extend(label + m for messages in exc.message_dict.values() for m in messages)
        if not found and nic.mac in seen:
            found.append(f"{label}the MAC is listed twice")
        for message in found:
            problem("nics", message)
        if found:
            continue
        seen.add(nic.mac)
        specs.append(fmt.NicSpec(nic.name, nic.mac, nic.ip or None, nic.prefix_len, nic.is_pxe))
    if sum(s.is_pxe for s in specs) > 1:
        problem("nics", "more than one NIC is marked * (PXE); a machine boots from exactly one")
    return specs


def _check_bmc(values: dict[str, str], problem) -> tuple[dict, str]:
    password = values.get("bmc_password", "")
    address = values.get("bmc_address", "")
    if not address:
        if any(values.get(c) for c in fmt.BMC_COLUMNS if c != "bmc_address"):
            problem("bmc_address", "a BMC needs its address")
        return {}, ""
    bmc = BMC(
        driver=values.get("bmc_driver") or "ipmi",
        address=address,
        port=values.get("bmc_port") or 623,
        username=values.get("bmc_username", ""),
    )
    for name, message in _model_errors(bmc):
        problem(f"bmc_{name}", message)
    return {"driver": bmc.driver, "address": bmc.address, "port": bmc.port, "username": bmc.username}, password


def _check_against_inventory(rows: list[RowPlan], create_racks: bool) -> set[tuple[str, str]]:
    """Hostnames, MACs and rack places against each other and against inventory; the racks to be made."""
    first_row: dict[str, int] = {}
    for row in rows:
        if row.hostname and row.hostname in first_row:
            row.problems.append(
                Problem(row.row, "hostname", f"{row.hostname} is already in row {first_row[row.hostname]}")
            )
        first_row.setdefault(row.hostname, row.row)
    existing = {
        m.hostname: m
        for m in Machine.objects.filter(hostname__in=list(first_row))
        .select_related("rack__site", "bmc")
        .prefetch_related("nics", "tags")
    }
    keys = {r.rack_key for r in rows if r.rack_key} | {_key(m.rack) for m in existing.values() if m.rack}
    racks = _racks(keys)
    sites = set(Site.objects.filter(slug__in={site for site, _ in keys}).values_list("slug", flat=True))
    missing = set()
    for row in rows:
        current = existing.get(row.hostname)
        if row.rack_key and row.rack_key not in racks:
            site, rack = row.rack_key
            if site not in sites:
                row.problems.append(Problem(row.row, "site", f"there is no site “{site}”"))
            elif not create_racks:
                row.problems.append(
                    Problem(row.row, "rack", f"site {site} has no rack “{rack}” (import with create racks to make it)")
                )
            else:
                missing.add(row.rack_key)
        if current is not None and row.placement_given and current.rack is not None:
            if _key(current.rack) != row.rack_key:
                row.problems.append(
                    Problem(
                        row.row,
                        "rack",
                        f"{row.hostname} is already in inventory in rack {current.rack}; an import does not move "
                        "machines between racks (move it in the admin, or check the hostname)",
                    )
                )
        row.current = current
        row.action = "create" if current is None else "change"
        if current is not None:
            row.changes = _changes(current, row)
            if not row.changes:
                row.action = "unchanged"
    _check_macs(rows)
    _check_places(rows, existing, racks)
    return missing


def _key(rack: Rack) -> tuple[str, str]:
    return rack.site.slug, rack.name


def _racks(keys: set[tuple[str, str]]) -> dict[tuple[str, str], Rack]:
    sites = {site for site, _ in keys}
    found = Rack.objects.filter(site__slug__in=sites).select_related("site")
    return {_key(r): r for r in found if _key(r) in keys}


def _changes(current: Machine, row: RowPlan) -> dict[str, tuple[str, str]]:
    changes = {}
    new = row.machine
    if row.placement_given:
        old_rack = f"{current.rack.site.slug}/{current.rack.name}" if current.rack else ""
        new_rack = "/".join(row.rack_key) if row.rack_key else ""
        if old_rack != new_rack:
            changes["rack"] = (old_rack, new_rack)
    for name in MACHINE_FIELDS:
        if name not in row.given:
            continue
        old, value = getattr(current, name), getattr(new, name)
        if str(old if old is not None else "") != str(value if value is not None else ""):
            changes[name] = (_text(old), _text(value))
    if row.nics is not None:
        old_nics, new_nics = fmt.nics_text(current.nics.all()), fmt.nics_text(row.nics)
        if old_nics != new_nics:
            changes["nics"] = (old_nics, new_nics)
    if row.bmc is not None:
        bmc = getattr(current, "bmc", None)
        old = {"driver": bmc.driver, "address": bmc.address, "port": bmc.port, "username": bmc.username} if bmc else {}
        for key in ("driver", "address", "port", "username"):
            if str(old.get(key, "")) != str(row.bmc.get(key, "")):
                changes[f"bmc_{key}"] = (_text(old.get(key)), _text(row.bmc.get(key)))
        if row.password:
            changes["bmc_password"] = ("", PASSWORD_SET)
    if row.tags is not None:
        old_tags, new_tags = tagging.text(t.name for t in current.tags.all()), tagging.text(row.tags)
        if old_tags != new_tags:
            changes["tags"] = (old_tags, new_tags)
    return changes


def _text(value) -> str:
    return "" if value is None else str(value)


def _check_macs(rows: list[RowPlan]) -> None:
    """A MAC belongs to one NIC: not twice in the file, not on a machine the file does not give it up from."""
    owner_row: dict[str, RowPlan] = {}
    for row in rows:
        for nic in row.nics or ():
            first = owner_row.setdefault(nic.mac, row)
            if first is not row:
                message = f"{nic.mac} is already a NIC of {first.hostname} in row {first.row}"
                row.problems.append(Problem(row.row, "nics", message))
    listed = {r.hostname: r for r in rows}
    for mac, hostname in NIC.objects.filter(mac__in=list(owner_row)).values_list("mac", "machine__hostname"):
        row = owner_row[mac]
        if hostname == row.hostname:
            continue
        other = listed.get(hostname)
        if other is not None and other.nics is not None and mac not in {n.mac for n in other.nics}:
            continue  # the file takes it off that machine
        row.problems.append(Problem(row.row, "nics", f"{mac} is already a NIC of {hostname} in inventory"))


@dataclass(frozen=True)
class _Span:
    low: int
    high: int
    hostname: str
    row: RowPlan | None  # None: a machine in inventory the file does not name
    depth: str = Depth.FULL

    def clashes(self, other: _Span) -> bool:
        """Sharing rack units is a clash unless the two are half-depth on opposite faces."""
        return OPPOSITE_HALF.get(self.depth) != other.depth


def _check_places(rows: list[RowPlan], existing: dict[str, Machine], racks: dict) -> None:
    """Every machine's U range inside its rack and clear of the others, as the rack will be after the import."""
    placed: dict[tuple[str, str], list[_Span]] = defaultdict(list)
    for row in rows:
        current = existing.get(row.hostname)
        if row.placement_given:
            key, position = row.rack_key, row.machine.position_u
        elif current is not None and current.rack is not None:
            key, position = _key(current.rack), current.position_u
        else:
            continue
        height = row.machine.height_u if "height_u" in row.given or current is None else current.height_u
        given = "depth" in row.given and row.machine.depth in Depth.values  # a bad one is the row's depth problem
        depth = row.machine.depth if given or current is None else current.depth
        if key is not None and isinstance(position, int) and isinstance(height, int):
            placed[key].append(_Span(position, position + height - 1, row.hostname, row, depth))
    listed = {r.hostname for r in rows}
    others = Machine.objects.filter(rack__in=list(racks.values())).values_list(
        "hostname", "rack_id", "position_u", "height_u", "depth"
    )
    key_of = {rack.pk: key for key, rack in racks.items()}
    for hostname, rack_id, position, height, depth in others:
        if hostname not in listed:
            placed[key_of[rack_id]].append(_Span(position, position + height - 1, hostname, None, depth))
    for key, spans in placed.items():
        height_u = racks[key].height_u if key in racks else NEW_RACK_HEIGHT_U
        name = "/".join(key)
        spans.sort(key=lambda s: (s.low, s.high))
        active: list[_Span] = []
        for span in spans:
            if span.row is not None and span.high > height_u:
                span.row.problems.append(
                    Problem(
                        span.row.row,
                        "position_u",
                        f"U{span.low}–U{span.high} does not fit in rack {name}, which is {height_u}U high",
                    )
                )
            active = [a for a in active if a.high >= span.low]
            clash = next((a for a in active if a.clashes(span)), None)
            if clash is not None:
                mine, theirs = (span, clash) if span.row is not None else (clash, span)
                if mine.row is not None:
                    where = f"row {theirs.row.row}" if theirs.row else "in inventory"
                    mine.row.problems.append(
                        Problem(
                            mine.row.row,
                            "position_u",
                            f"{u_span(mine.low, mine.high)} in rack {name} overlaps "
                            f"{theirs.hostname} ({where}), which occupies {u_span(theirs.low, theirs.high)}",
                        )
                    )
            active.append(span)


@transaction.atomic(durable=True)
def apply(
    data: bytes | str, file_format: str = "csv", *, actor: Actor, create_racks: bool = False, expect: str = ""
) -> Plan:
    """Import the file: every row, or (ImportRefused, with the plan and its problems) nothing. ``expect`` is the
    digest of the preview shown: when inventory changed since, planning again differs and nothing is written."""
    result = plan(data, file_format, create_racks=create_racks)
    if not result.ok:
        raise ImportRefused(result)
    if expect and expect != result.digest:
        raise ImportRefused(result, "inventory changed since the preview: look at the new preview and apply that")
    try:
        _write(result)
    except IntegrityError:
        # Someone else's change between planning and writing; the database's constraints caught it.
        raise ImportRefused(result, "inventory changed while importing; nothing was written: preview again") from None
    written = [r for r in result.rows if r.action != "unchanged"]
    details = {
        "created": result.count("create"),
        "changed": result.count("change"),
        "unchanged": result.count("unchanged"),
        "racks_created": ["/".join(k) for k in result.new_racks],
        "rows": [
            {"row": r.row, "hostname": r.hostname, "action": r.action, "fields": list(r.changes)} for r in written
        ],
    }
    label = f"{details['created']} created, {details['changed']} changed"
    record(actor, "inventory.import", None, details, object_label=f"machine import: {label}")
    return result


def _write(result: Plan) -> None:
    racks = _racks({r.rack_key for r in result.rows if r.rack_key})
    sites = {s.slug: s for s in Site.objects.filter(slug__in={site for site, _ in result.new_racks})}
    for site, name in result.new_racks:
        racks[(site, name)] = Rack.objects.create(site=sites[site], name=name, height_u=NEW_RACK_HEIGHT_U)
    changed = [r for r in result.rows if r.action == "change"]
    # Off their old place first, so machines trading places never overlap half-way (the exclusion constraint).
    moving = [r.current.pk for r in changed if {"rack", "position_u", "height_u", "depth"} & set(r.changes)]
    Machine.objects.filter(pk__in=moving).update(rack=None, position_u=None)
    _clear_nics_and_bmcs(changed)
    created = [r for r in result.rows if r.action == "create"]
    for row in created:
        row.machine.rack = racks.get(row.rack_key) if row.rack_key else None
    Machine.objects.bulk_create([r.machine for r in created])
    for row in created:
        row.current = row.machine
    for row in changed:
        machine = row.current
        fields = [name for name in MACHINE_FIELDS if name in row.changes]
        for name in fields:
            setattr(machine, name, getattr(row.machine, name))
        if machine.pk in moving:
            if row.placement_given:
                machine.rack = racks.get(row.rack_key) if row.rack_key else None
                machine.position_u = row.machine.position_u
            fields = sorted({*fields, "rack", "position_u"})  # back from the unracking above
        if fields:
            machine.save(update_fields=fields)
    _write_nics_and_bmcs(created + changed)
    _write_tags(created + changed)


def _write_tags(rows: list[RowPlan]) -> None:
    """Each row's tags as the file lists them (the import's one audit entry lists the rows that changed)."""
    rows = [r for r in rows if r.tags is not None and (r.action == "create" or "tags" in r.changes)]
    names = sorted({name for r in rows for name in r.tags})
    tags, _ = tagging.tags_named(names)
    tagging.Through.objects.filter(machine_id__in=[r.current.pk for r in rows if r.action == "change"]).delete()
    tagging.Through.objects.bulk_create(
        [tagging.Through(machine_id=r.current.pk, tag_id=tags[name].pk) for r in rows for name in r.tags]
    )


def _clear_nics_and_bmcs(changed: list[RowPlan]) -> None:
    """Remove the NICs and BMCs the file no longer lists, and the PXE mark from NICs losing it, before anything is
    added: a MAC can move from one machine to another in one file, and a machine has one PXE NIC at a time."""
    gone, unmarked, bmcs = [], [], []
    for row in changed:
        if row.nics is not None and "nics" in row.changes:
            wanted = {n.mac: n for n in row.nics}
            for nic in row.current.nics.all():
                if nic.mac not in wanted:
                    gone.append(nic.pk)
                elif nic.is_pxe and not wanted[nic.mac].is_pxe:
                    unmarked.append(nic.pk)
        if row.bmc == {} and getattr(row.current, "bmc", None) is not None:
            bmcs.append(row.current.bmc.pk)
    NIC.objects.filter(pk__in=gone).delete()
    NIC.objects.filter(pk__in=unmarked).update(is_pxe=False)
    BMC.objects.filter(pk__in=bmcs).delete()


def _write_nics_and_bmcs(rows: list[RowPlan]) -> None:
    new_nics = []
    for row in rows:
        machine = row.current
        if row.nics is not None and (row.action == "create" or "nics" in row.changes):
            have = {n.mac: n for n in machine.nics.all()} if row.action == "change" else {}
            for spec in row.nics:
                values = {"name": spec.name, "ip": spec.ip, "prefix_len": spec.prefix_len, "is_pxe": spec.is_pxe}
                nic = have.get(spec.mac)
                if nic is None:
                    new_nics.append(NIC(machine=machine, mac=spec.mac, **values))
                elif any(getattr(nic, k) != v for k, v in values.items()):
                    for key, value in values.items():
                        setattr(nic, key, value)
                    nic.save(update_fields=list(values))
        if row.bmc:
            bmc_fields = {k.removeprefix("bmc_") for k in row.changes if k.startswith("bmc_")}
            if row.action == "create" or bmc_fields:
                bmc = getattr(machine, "bmc", None) if row.action == "change" else None
                bmc = bmc or BMC(machine=machine)
                for key, value in row.bmc.items():
                    setattr(bmc, key, value)
                if row.password:
                    bmc.set_password(row.password)
                bmc.save()
    NIC.objects.bulk_create(new_nics)


def export_rows() -> list[dict[str, str]]:
    """Every machine as an import row (BMC passwords blank: they are write-only), by hostname."""
    machines = Machine.objects.select_related("rack__site", "bmc").prefetch_related("nics", "tags").order_by("hostname")
    rows = []
    for m in machines.iterator(chunk_size=2000):
        bmc = getattr(m, "bmc", None)
        rows.append(
            {
                "site": m.rack.site.slug if m.rack else "",
                "rack": m.rack.name if m.rack else "",
                "hostname": m.hostname,
                "position_u": _text(m.position_u),
                "height_u": str(m.height_u),
                "depth": m.depth,
                "serial": m.serial,
                "vendor": m.vendor,
                "model": m.model,
                "nics": fmt.nics_text(m.nics.all()),
                "bmc_driver": bmc.driver if bmc else "",
                "bmc_address": bmc.address if bmc else "",
                "bmc_port": str(bmc.port) if bmc else "",
                "bmc_username": bmc.username if bmc else "",
                "bmc_password": "",
                "tags": tagging.text(t.name for t in m.tags.all()),
            }
        )
    return rows
