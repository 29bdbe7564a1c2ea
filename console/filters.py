"""The machine list's filters, search and sort, shared by the page, its CSV export and the REST API,
so that all three always show the same machines for the same query."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q, Subquery, Value
from django.db.models.functions import Replace

from core.edge import int_param
from installs.models import Install
from inventory.models import NIC, Machine, MachineStatus, PowerState

SORTS = {
    "hostname": ("hostname",),
    "rack": ("rack__site__slug", "rack__name", "position_u", "hostname"),
    "status": ("status", "hostname"),
    "power": ("power_state", "hostname"),
    "vendor": ("vendor", "model", "hostname"),
    "serial": ("serial", "hostname"),
    "profile": ("last_profile", "hostname"),
    "install": ("last_install_state", "hostname"),
}
FILTER_FIELDS = ("q", "site", "rack", "status", "power", "vendor", "profile")
_HEX = re.compile(r"[^0-9a-f]")


@dataclass
class MachineQuery:
    q: str = ""
    site: str = ""
    rack: str = ""
    status: str = ""
    power: str = ""
    vendor: str = ""
    profile: str = ""
    sort: str = "hostname"
    desc: bool = False

    @classmethod
    def from_params(cls, params) -> MachineQuery:
        sort = params.get("sort", "hostname") or "hostname"
        desc = sort.startswith("-")
        sort = sort.lstrip("-")
        values = {f: (params.get(f) or "").strip()[:200] for f in FILTER_FIELDS}
        return cls(**values, sort=sort if sort in SORTS else "hostname", desc=desc)

    @property
    def active(self) -> bool:
        return any(getattr(self, f) for f in FILTER_FIELDS)

    def params(self, **override) -> dict:
        values = {f: getattr(self, f) for f in FILTER_FIELDS}
        values["sort"] = ("-" if self.desc else "") + self.sort
        values.update(override)
        return {k: v for k, v in values.items() if v and not (k == "sort" and v == "hostname")}


def with_last_install(machines):
    """Annotate each machine with its latest install: one correlated subquery per column, so a page
    of any length costs the same number of queries."""

    last = Install.objects.filter(machine=OuterRef("pk")).order_by("-id")
    return machines.annotate(
        last_install_id=Subquery(last.values("id")[:1]),
        last_install_state=Subquery(last.values("state")[:1]),
        last_install_progress=Subquery(last.values("progress")[:1]),
        last_profile=Subquery(last.values("profile__name")[:1]),
        pxe_mac=Subquery(NIC.objects.filter(machine=OuterRef("pk"), is_pxe=True).values("mac")[:1]),
    )


def mac_digits(text: str) -> str:
    """A MAC or part of one in any notation (aa:bb, AA-BB, aabb.ccdd) as bare lower-case hex."""
    return _HEX.sub("", text.lower())


def search_q(text: str) -> Q:
    text = text.strip()
    q = Q(hostname__icontains=text) | Q(serial__icontains=text) | Q(bmc__address__icontains=text)
    digits = mac_digits(text)
    # Only a string that is all MAC (hex digits and separators) is also searched as one, so that
    # "node-12" does not match every MAC containing "12".
    if len(digits) >= 4 and re.fullmatch(r"[0-9a-fA-F:.\-\s]+", text):
        flat = NIC.objects.annotate(flat=Replace("mac", Value(":"), Value(""))).filter(
            machine=OuterRef("pk"), flat__contains=digits
        )
        q |= Q(Exists(flat))
    return q


def for_display(machines):
    return with_last_install(machines.select_related("rack__site", "bmc").defer("facts", "bmc__password_ciphertext"))


def machine_queryset(query: MachineQuery):
    """Machines matching ``query``, sorted, with what the list shows selected or annotated."""
    machines = for_display(Machine.objects.all())
    if query.q:
        machines = machines.filter(search_q(query.q))
    if query.site:
        machines = machines.filter(rack__site__slug=query.site)
    if query.rack:
        rack_id = int_param(query.rack)
        machines = machines.filter(rack_id=rack_id) if rack_id is not None else machines.filter(rack__name=query.rack)
    if query.status in MachineStatus.values:
        machines = machines.filter(status=query.status)
    if query.power in PowerState.values:
        machines = machines.filter(power_state=query.power)
    if query.vendor:
        machines = machines.filter(vendor=query.vendor)
    if query.profile:
        machines = machines.filter(last_profile=query.profile)
    order = SORTS[query.sort]
    if query.desc:
        order = tuple("-" + f for f in order)
    return machines.order_by(*order)


def page_rows(query: MachineQuery, page_number, per_page: int):
    """One page of the list: the page's ids first (the deep OFFSET of page 150 then skips bare ids, not
    rows with their subqueries evaluated), then those machines with everything the page shows."""

    ids = machine_queryset(query).values_list("pk", flat=True)
    page = Paginator(ids, per_page).get_page(page_number)
    wanted = list(page.object_list)
    by_id = {m.pk: m for m in for_display(Machine.objects.filter(pk__in=wanted))}
    page.object_list = [by_id[pk] for pk in wanted if pk in by_id]
    return page
