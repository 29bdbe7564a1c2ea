"""Rack elevations: the SVG front view of a rack with a box per machine (and its rear, when it holds half-depth
machines), for the rack list, one rack's page and a site's overview (console/views/sites.py).

Each box says its state and power in words beside the colour, marks a failure, shows the BMC's and the host's
reachability, and carries the hardware summary that hover and keyboard focus show (static/js/rack-facts.js).

The boxes and the U ruler are drawn here rather than in the template: a site of 40 full racks has 1,680 boxes,
and the template engine spent about 400 ms resolving their 60,000 variables; one str.format per box with its
texts escaped takes a small part of that. The template (inventory/_rack.html) keeps the frame, the heading
and the layout."""

from __future__ import annotations

import functools
from html import escape
from types import SimpleNamespace
from urllib.parse import quote

from django.db.models import F
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString, mark_safe

from console import hardware
from console.filters import with_last_install
from installs.models import ACTIVE_STATES, InstallState
from inventory.models import Depth, Machine, MachineStatus, PowerState, Rack

U_PX = 18
RACK_WIDTH = 260
LABEL_W = 28
# Where the state text ends; the two reachability dots sit right of it.
STATE_END = RACK_WIDTH - 26
# Rough glyph widths (px) of the box's hostname (11px) and state (9px) text, to fit both on one line.
NAME_CHAR_PX = 6.2
STATE_CHAR_PX = 5.2
FAILED_STATES = frozenset({MachineStatus.FAILED, MachineStatus.BROKEN, InstallState.FAILED})
POWER_SHOWN = {PowerState.ON: "on", PowerState.OFF: "off"}
# What the frame in the template needs of the geometry.
GEOMETRY = {"rack_width": RACK_WIDTH, "label_w": LABEL_W, "frame_w": RACK_WIDTH - LABEL_W}

# What the hardware summary is made of (console/hardware.py summary_line).
FACT_FIELDS = (
    "cpu_cores",
    "memory_bytes",
    "disk_count",
    "ssd_count",
    "hdd_count",
    "nvme_count",
    "nic_max_speed_mbps",
)
# What a box is drawn from: a machine's row as draw_racks reads it (with_last_install's and the BMC's columns too).
BOX_FIELDS = (
    "hostname",
    "position_u",
    "height_u",
    "status",
    "power_state",
    "host_reachable",
    "bmc_reachable",
    "last_install_id",
    "last_install_state",
    *FACT_FIELDS,
)
_POSITION = BOX_FIELDS.index("position_u")

# Every number of a box but its height and place is the same for all boxes: set once here, not per box.
_BOX = (
    '<a href="{href}" data-machine="{hostname}" data-state="{state}" data-facts="{facts}"{install}>'
    "<title>{hostname} — {state}{failure}, power {power}; {reach}; {facts}</title>"
    f'<rect class="m s-{{state}}" x="{LABEL_W + 2}" y="{{y}}" width="{RACK_WIDTH - LABEL_W - 4}" height="{{h}}" rx="2">'
    "</rect>"
    "{mark}"
    '<text class="mtext" x="{name_x}" y="{text_y}">{name}</text>'
    f'<text class="mstate" x="{STATE_END}" y="{{text_y}}" text-anchor="end">{{label}}</text>'
    "{dots}"
    "</a>\n"
)
_DOTS = (
    f'<circle class="dot r-{{bmc_dot}}" cx="{RACK_WIDTH - 18}" cy="{{dot_y}}" r="3"><title>BMC {{bmc_reach}}</title>'
    "</circle>"
    f'<circle class="dot r-{{host_dot}}" cx="{RACK_WIDTH - 9}" cy="{{dot_y}}" r="3"><title>host {{host_reach}}</title>'
    "</circle>"
)


def draw_racks(racks) -> list[dict]:
    """The drawings of these racks (fetched already, with their site): one query for all their machines, read
    as plain tuples (model instances for 1,680 machines cost more than the query itself)."""
    racks = list(racks)
    rows = (
        with_last_install(Machine.objects.filter(rack__in=racks))
        .annotate(bmc_reachable=F("bmc__reachable"))
        .order_by("rack_id", "-position_u")  # top down: the order a reader and the Tab key go
        .values_list("rack_id", "depth", *BOX_FIELDS)
    )
    by_rack: dict[int, list] = {}
    for row in rows:
        by_rack.setdefault(row[0], []).append(row[1:])
    machine_url = _machine_url()
    return [_drawing(rack, by_rack.get(rack.pk, []), machine_url) for rack in racks]


def rack_drawing(rack: Rack, machines: list) -> dict:
    """The drawing of one rack from machines (anything with the attributes of BOX_FIELDS; a missing one is None,
    a missing depth full)."""
    rows = [(getattr(m, "depth", Depth.FULL), *(getattr(m, name, None) for name in BOX_FIELDS)) for m in machines]
    return _drawing(rack, rows, _machine_url())


def _machine_url() -> str:
    """A machine page's URL with "{}" for the (quoted) hostname."""
    return reverse("inventory:machine-detail", args=["-"])[:-2] + "{}/"


def _drawing(rack: Rack, rows: list[tuple], machine_url: str) -> dict:
    """The rack's SVG parts (U1 at the bottom) from rows of (depth, *BOX_FIELDS): its ruler and one box per racked
    machine, on the front; and, when the rack holds half-depth machines, its rear: the rear halves as boxes, the
    full-depth machines as their backs, which are not links (the front's box is the one to open, and the one Tab
    stops at)."""
    height = rack.height_u * U_PX
    racked = [row for row in rows if row[1 + _POSITION] is not None]
    front = [_box_svg(height, machine_url, row[1:]) for row in racked if row[0] != Depth.REAR]
    rear = [_box_svg(height, machine_url, row[1:]) for row in racked if row[0] == Depth.REAR]
    half_depth = any(row[0] != Depth.FULL for row in racked)
    backs = [_back(row[1:], height) for row in racked if row[0] == Depth.FULL] if half_depth else []
    return {
        "rack": rack,
        "height": height,
        "svg_h": height + 2,
        "ruler": _ruler(rack.height_u),
        "boxes": front + rear,
        "svg": mark_safe("".join(front)),  # every value in each box was escaped by _box_svg
        "rear_svg": mark_safe("".join(backs) + "".join(rear)) if half_depth else None,
    }


def _back(values: tuple, height: int) -> str:
    """A full-depth machine seen from the rear: its place and name, greyed."""
    m = SimpleNamespace(**dict(zip(BOX_FIELDS, values, strict=True)))
    top = height - (m.position_u + m.height_u - 1) * U_PX
    text_y = round(top + m.height_u * U_PX / 2 + 4)
    return (
        f'<g class="back"><rect class="m back" x="{LABEL_W + 2}" y="{top + 1}" width="{RACK_WIDTH - LABEL_W - 4}" '
        f'height="{m.height_u * U_PX - 2}" rx="2"></rect>'
        f'<text class="mtext" x="{LABEL_W + 8}" y="{text_y}">{escape(m.hostname)} (back)</text></g>\n'
    )


@functools.cache
def _ruler(height_u: int) -> SafeString:
    """The U labels and lines of a rack this high (the same for every rack of that height)."""
    height = height_u * U_PX
    return format_html_join(
        "",
        '<text class="ulabel" x="2" y="{}">U{}</text><line class="uline" x1="{}" x2="{}" y1="{}" y2="{}"></line>',
        (
            (height - u * U_PX + 13, u, LABEL_W, RACK_WIDTH, height - u * U_PX, height - u * U_PX)
            for u in range(1, height_u + 1)
        ),
    )


# A box is about 800 bytes: at most some 7 MB, five halls of 40 full racks.
@functools.lru_cache(maxsize=8192)
def _box_svg(height: int, machine_url: str, values: tuple) -> str:
    """One machine's box from its BOX_FIELDS. Drawn once per distinct look: the live refresh redraws the whole
    grid at every install event, and nearly every box of it is as it was."""
    m = SimpleNamespace(**dict(zip(BOX_FIELDS, values, strict=True)))
    state = m.last_install_state if m.last_install_state in ACTIVE_STATES else m.status
    failed = state in FAILED_STATES or m.last_install_state == InstallState.FAILED
    label = f"{state} · {POWER_SHOWN.get(m.power_state, 'power ?')}"
    name_room = STATE_END - len(label) * STATE_CHAR_PX - LABEL_W - (22 if failed else 12)
    name_chars = max(4, int(name_room / NAME_CHAR_PX))
    top = height - (m.position_u + m.height_u - 1) * U_PX
    text_y = round(top + m.height_u * U_PX / 2 + 4)
    install = m.last_install_id if m.last_install_state in ACTIVE_STATES else None
    name = m.hostname if len(m.hostname) <= name_chars else m.hostname[: name_chars - 1] + "…"
    reach, dots = _reach(m.bmc_reachable, m.host_reachable)
    hostname = escape(m.hostname)
    # str.format, every text escaped here and every number an int: format_html escaping each value of 1,680 boxes
    # was most of the overview's time. What repeats from box to box (states, facts, reachability) is escaped once.
    return _BOX.format(
        href=escape(machine_url.format(quote(m.hostname))),
        hostname=hostname,
        state=_escaped(state),
        facts=_facts(*(getattr(m, name) for name in FACT_FIELDS)),
        install=f' data-install="{int(install)}"' if install else "",
        failure=" (failure)" if failed else "",
        power=_escaped(m.power_state),
        reach=reach,
        y=top + 1,
        h=m.height_u * U_PX - 2,
        mark=f'<text class="mfail" x="{LABEL_W + 5}" y="{text_y}">✖</text>' if failed else "",
        name_x=LABEL_W + (17 if failed else 8),
        name=hostname if name is m.hostname else escape(name),
        text_y=text_y,
        label=_escaped(label),
        dots=dots.format(dot_y=text_y - 4),
    )  # fmt: skip


@functools.lru_cache(maxsize=256)
def _escaped(text: str) -> str:
    return escape(text)


@functools.lru_cache(maxsize=4096)
def _facts(*values) -> str:
    """The hardware summary hover shows, escaped; a hall has few distinct kinds of machine."""
    summary = hardware.summary_line(SimpleNamespace(**dict(zip(FACT_FIELDS, values, strict=True))))
    return escape(summary or "hardware not recorded yet")


@functools.cache
def _reach(bmc_reachable: bool | None, host_reachable: bool | None) -> tuple[str, str]:
    """Each box's two reachability dots, the BMC's (last contact) and the host's (last ping), and their words;
    the dots' height is left to fill in."""

    def say(value, unknown):
        return ("none", unknown) if value is None else ("up", "answers") if value else ("down", "not answering")

    bmc_dot, bmc_reach = say(bmc_reachable, "never contacted")
    host_dot, host_reach = say(host_reachable, "not pinged")
    dots = _DOTS.format(bmc_dot=bmc_dot, bmc_reach=bmc_reach, host_dot=host_dot, host_reach=host_reach, dot_y="{dot_y}")
    return f"BMC {bmc_reach}, host {host_reach}", dots
