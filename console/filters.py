"""The machine list's filters, search and sort, shared by the page, its CSV export, the REST API and
``manage.py machines``, so that all of them always show the same machines for the same query.

The hardware filters read the summary columns commissioning fills (inventory/models.py, Machine.cpu_model and
the rest) and the NICs' LLDP neighbours; a machine never commissioned has none and matches none of them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q, Subquery, Value
from django.db.models.functions import Replace

from core.edge import int_param
from installs.models import Install
from inventory import tagging
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
HARDWARE_FIELDS = (
    "memory_gib_min",
    "cpu_model",
    "cores_min",
    "disks_min",
    "disk_type",
    "nic_speed_min",
    "switch",
    "switch_port",
)
FILTER_FIELDS = ("q", "site", "rack", "status", "power", "vendor", "profile", *HARDWARE_FIELDS)
# "At least one disk of this type": the summary column that counts them.
DISK_TYPES = {"ssd": "ssd_count", "hdd": "hdd_count", "nvme": "nvme_count"}
# The whole-number filters ("at least"): the column each reads, the largest value it takes (beyond any machine:
# a typo, said so) and what it counts.
WHOLE_NUMBERS = {
    "cores_min": ("cpu_cores", 100_000, "CPU cores"),
    "disks_min": ("disk_count", 32_767, "disks"),
    "nic_speed_min": ("nic_max_speed_mbps", 10_000_000, "Mb/s, e.g. 25000 for 25 Gb/s"),
}
MEMORY_GIB_MAX = 1_048_576  # 1 PiB
MAX_TAG_FILTERS = 10
_GIB = re.compile(r"^\d{1,7}(\.\d{1,3})?$")
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
    memory_gib_min: str = ""
    cpu_model: str = ""
    cores_min: str = ""
    disks_min: str = ""
    disk_type: str = ""
    nic_speed_min: str = ""
    switch: str = ""
    switch_port: str = ""
    tag: tuple[str, ...] = ()  # every one of them (tag=gpu&tag=fast: both)
    sort: str = "hostname"
    desc: bool = False

    @classmethod
    def from_params(cls, params) -> MachineQuery:
        sort = params.get("sort", "hostname") or "hostname"
        desc = sort.startswith("-")
        sort = sort.lstrip("-")
        values = {f: _param(params.get(f)) for f in FILTER_FIELDS}
        return cls(**values, tag=_tags_param(params), sort=sort if sort in SORTS else "hostname", desc=desc)

    @property
    def active(self) -> bool:
        return any(getattr(self, f) for f in FILTER_FIELDS) or bool(self.tag)

    @property
    def hardware_active(self) -> bool:
        return any(getattr(self, f) for f in HARDWARE_FIELDS)

    def problems(self) -> dict[str, str]:
        """Each filter whose value means nothing, with what it takes: the page, the API and the command line
        refuse the query (400) rather than list machines the technician did not ask for."""
        found = {}
        if self.status and self.status not in MachineStatus.values:
            found["status"] = f"“{self.status}” is not a status; the statuses are {', '.join(MachineStatus.values)}."
        if self.memory_gib_min and not (
            _GIB.match(self.memory_gib_min) and float(self.memory_gib_min) <= MEMORY_GIB_MAX
        ):
            found["memory_gib_min"] = (
                f"“{self.memory_gib_min}” is not an amount of memory: write GiB as a number, e.g. 256 or 0.5."
            )
        for field, (_, maximum, unit) in WHOLE_NUMBERS.items():
            value = getattr(self, field)
            if value and int_param(value, maximum=maximum) is None:
                found[field] = f"“{value}” is not a whole number from 0 to {maximum:,} ({unit})."
        if self.disk_type and self.disk_type not in DISK_TYPES:
            found["disk_type"] = f"“{self.disk_type}” is not a disk type; choose ssd, hdd or nvme."
        if len(self.tag) > MAX_TAG_FILTERS:
            found["tag"] = f"{len(self.tag)} tags; filter on at most {MAX_TAG_FILTERS} at once."
        else:
            try:
                tagging.parse(self.tag, "tag")
            except ValidationError as exc:
                found["tag"] = exc.message_dict["tag"][0]
        return found

    def params(self, **override) -> dict:
        """The query as URL parameters (``tag`` a list: urlencode them with doseq)."""
        values = {f: getattr(self, f) for f in FILTER_FIELDS} | {"tag": list(self.tag)}
        values["sort"] = ("-" if self.desc else "") + self.sort
        values.update(override)
        return {k: v for k, v in values.items() if v and not (k == "sort" and v == "hostname")}


def _tags_param(params) -> tuple[str, ...]:
    """``tag`` given any number of times (a query string, the API's list, the CLI's repeated --tag), each as it
    is typed but lower-case; problems() says which is not a tag name."""
    values = params.getlist("tag") if hasattr(params, "getlist") else params.get("tag")
    if values is None:
        values = []
    elif isinstance(values, str):
        values = [values]
    return tuple(dict.fromkeys(t for t in (_param(v).lower() for v in list(values)[: MAX_TAG_FILTERS + 1]) if t))


def _param(value) -> str:
    """A filter's value as text: the page's and the CLI's are text already, the API's may be numbers."""
    return ("" if value is None else str(value)).strip()[:200]


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
    q |= Q(Exists(tagging.Through.objects.filter(machine=OuterRef("pk"), tag__name__icontains=text)))
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
    machines = machines.select_related("rack__site", "bmc").prefetch_related("tags")
    return with_last_install(machines.defer("facts", "bmc__password_ciphertext"))


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
    if query.hardware_active:
        machines = machines.filter(hardware_q(query))
    for name in query.tag[:MAX_TAG_FILTERS]:
        machines = machines.filter(Exists(tagging.Through.objects.filter(machine=OuterRef("pk"), tag__name=name)))
    order = SORTS[query.sort]
    if query.desc:
        order = tuple("-" + f for f in order)
    return machines.order_by(*order)


def hardware_q(query: MachineQuery) -> Q:
    """The hardware filters as one condition. A value ``problems()`` refuses is left out, so that no caller
    that skipped the check gets a 500."""
    q = Q()
    if query.memory_gib_min and _GIB.match(query.memory_gib_min):
        q &= Q(memory_bytes__gte=int(float(query.memory_gib_min) * 2**30))
    if query.cpu_model:
        q &= Q(cpu_model__icontains=query.cpu_model)
    for field, (column, maximum, _) in WHOLE_NUMBERS.items():
        number = int_param(getattr(query, field), maximum=maximum)
        if number is not None:
            q &= Q(**{f"{column}__gte": number})
    if query.disk_type in DISK_TYPES:
        q &= Q(**{f"{DISK_TYPES[query.disk_type]}__gte": 1})
    if query.switch or query.switch_port:
        # One NIC cabled to that switch and that port, not a NIC on the switch and another on the port.
        nics = NIC.objects.filter(machine=OuterRef("pk"))
        if query.switch:
            nics = nics.filter(Q(switch_name__icontains=query.switch) | Q(switch_chassis__iexact=query.switch))
        if query.switch_port:
            nics = nics.filter(switch_port__iexact=query.switch_port)
        q &= Q(Exists(nics))
    return q


def page_rows(query: MachineQuery, page_number, per_page: int):
    """One page of the list: the page's ids first (the deep OFFSET of page 150 then skips bare ids, not
    rows with their subqueries evaluated), then those machines with everything the page shows."""

    ids = machine_queryset(query).values_list("pk", flat=True)
    page = Paginator(ids, per_page).get_page(page_number)
    wanted = list(page.object_list)
    by_id = {m.pk: m for m in for_display(Machine.objects.filter(pk__in=wanted))}
    page.object_list = [by_id[pk] for pk in wanted if pk in by_id]
    return page
