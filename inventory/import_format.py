"""The machine import/export file: its columns, how NICs are written in one cell, and reading it from CSV, JSON or
YAML. Pure text handling, no database: inventory/importing.py plans and applies what is read here.

One row per machine. ``hostname`` is the only required column; a column left out of the file leaves that field
of existing machines alone, and a column present but empty in a row clears it (``bmc_password`` excepted: it is
write-only, and empty means "keep the stored one"). The ``nics`` cell lists the machine's NICs separated by
``;``, each ``[*][name=]mac[@ip/prefix]``, ``*`` marking the PXE NIC: ``*eno1=aa:bb:cc:dd:ee:01@10.0.0.5/24;
eno2=aa:bb:cc:dd:ee:02``. The ``tags`` cell lists the machine's tags separated by spaces or semicolons (``gpu
ceph-osd``); a tag not in inventory yet is created.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import yaml

from core.csv_export import FORMULA_STARTS, safe_cell
from core.edge import unstorable

COLUMNS = (
    "site",
    "rack",
    "hostname",
    "position_u",
    "height_u",
    "depth",
    "serial",
    "vendor",
    "model",
    "nics",
    "bmc_driver",
    "bmc_address",
    "bmc_port",
    "bmc_username",
    "bmc_password",
    "tags",
)
BMC_COLUMNS = tuple(c for c in COLUMNS if c.startswith("bmc_"))
FORMATS = ("csv", "json", "yaml")
# Bounds that keep a preview inside a request's time: four times the fleet this is sized for.
MAX_ROWS = 20_000
MAX_BYTES = 16 * 1024 * 1024
# The column a CSV row's cells beyond the header's are reported in.
EXTRA = "(extra cells)"
# The row number a problem with the header (or the file as a whole) is reported on.
HEADER_ROW = 1


class FileRefused(ValueError):
    """The file as a whole cannot be read (not UTF-8, not a list of rows, too big); nothing in it is planned."""


@dataclass(frozen=True)
class NicSpec:
    name: str
    mac: str
    ip: str | None = None
    prefix_len: int | None = None
    is_pxe: bool = False

    def text(self) -> str:
        address = f"@{self.ip}/{'' if self.prefix_len is None else self.prefix_len}" if self.ip else ""
        return f"{'*' if self.is_pxe else ''}{self.name + '=' if self.name else ''}{self.mac}{address}"


class NicSyntaxError(ValueError):
    pass


def parse_nic(entry: str) -> tuple[str, str, str | None, str | None, bool]:
    """(name, mac, ip, prefix, is_pxe) as typed, from one ``[*][name=]mac[@ip/prefix]``; values are checked later."""
    text = entry.strip()
    is_pxe = text.startswith("*")
    text = text.removeprefix("*").strip()
    name, _, rest = text.rpartition("=")
    mac, at, address = rest.partition("@")
    ip = prefix = None
    if at:
        ip, slash, prefix = address.partition("/")
        if not slash or not prefix.strip():
            raise NicSyntaxError(f"“{entry.strip()}”: write the address with its prefix length, as 10.0.0.5/24")
        ip, prefix = ip.strip(), prefix.strip()
    if not mac.strip():
        raise NicSyntaxError(f"“{entry.strip()}” has no MAC address")
    return name.strip(), mac.strip(), ip, prefix, is_pxe


def nic_entries(cell: str) -> list[str]:
    return [part for part in (p.strip() for p in cell.split(";")) if part]


def nics_text(nics) -> str:
    """The ``nics`` cell for NicSpecs (or NICs), PXE NIC first, then by MAC: one spelling, so re-import matches."""
    ordered = sorted(nics, key=lambda n: (not n.is_pxe, n.mac))
    return "; ".join(
        NicSpec(n.name, n.mac, n.ip or None, n.prefix_len if n.ip else None, n.is_pxe).text() for n in ordered
    )


@dataclass
class ParsedFile:
    columns: tuple[str, ...]
    rows: list[tuple[int, dict[str, str]]]  # (row number, column -> text)
    problems: list[tuple[int, str, str]]  # (row, column, message) found while reading


def read(data: bytes | str, fmt: str) -> ParsedFile:
    """The rows of a CSV, JSON or YAML file. CSV rows are numbered as a spreadsheet shows them (the header is row
    1); JSON and YAML items from 2 as well, so one numbering serves every format."""
    if fmt not in FORMATS:
        raise FileRefused(f"the format must be one of {', '.join(FORMATS)}")
    if len(data) > MAX_BYTES:
        raise FileRefused(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FileRefused("the file is not UTF-8 text") from None
    if "\x00" in data:
        raise FileRefused("the file contains NUL characters")
    items = _csv_items(data) if fmt == "csv" else _structured_items(data, fmt)
    if len(items) > MAX_ROWS:
        raise FileRefused(f"the file has {len(items)} rows; at most {MAX_ROWS} are imported at once")
    columns: list[str] = []
    for item in items:
        columns.extend(k for k in item if k not in columns)
    parsed = ParsedFile(tuple(columns), [], [])
    for column in columns:
        if column not in COLUMNS and column != EXTRA:
            parsed.problems.append((HEADER_ROW, column, f"unknown column “{column}”; columns: {', '.join(COLUMNS)}"))
    if "hostname" not in columns:
        parsed.problems.append((HEADER_ROW, "hostname", "the file has no hostname column (it is required)"))
    for number, item in enumerate(items, start=HEADER_ROW + 1):
        row = {}
        for column, value in item.items():
            if column == EXTRA:
                parsed.problems.append((number, EXTRA, "the row has more cells than the header has columns"))
                continue
            text = _cell(value)
            if text is None:
                parsed.problems.append((number, column, "must be text or a number"))
            elif problem := unstorable(text):
                parsed.problems.append((number, column, problem))
            else:
                row[column] = text.strip()
        parsed.rows.append((number, row))
    return parsed


def _csv_items(text: str) -> list[dict]:
    reader = csv.reader(io.StringIO(text))
    try:
        lines = list(reader)
    except csv.Error as exc:
        raise FileRefused(f"the CSV cannot be read: {exc}") from None
    if not lines:
        raise FileRefused("the file is empty")
    header = [h.strip().lower() for h in lines[0]]
    if len(set(header)) != len(header):
        raise FileRefused("a column is named twice in the header")
    items = []
    for line in lines[1:]:
        if not any(cell.strip() for cell in line):
            items.append({})  # a blank line keeps its number, so later rows match the spreadsheet
            continue
        item = dict(zip(header, map(_unquoted, line), strict=False))
        if len(line) > len(header):
            item[EXTRA] = ""  # reported on its row by read()
        items.append(item)
    return items


def _unquoted(cell: str) -> str:
    """A cell as export wrote it before formula-escaping (core/csv_export.py), so an export imports back."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


def _structured_items(text: str, fmt: str) -> list[dict]:
    try:
        value = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise FileRefused(f"the {fmt.upper()} cannot be read: {str(exc).splitlines()[0][:200]}") from None
    except RecursionError:
        raise FileRefused(f"the {fmt.upper()} is nested too deep") from None
    if isinstance(value, dict) and isinstance(value.get("machines"), list):
        value = value["machines"]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise FileRefused(f"the {fmt.upper()} must be a list of machines (objects), or {{machines: [...]}}")
    return [{str(k).strip().lower(): v for k, v in item.items()} for item in value]


def _cell(value) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "; ".join(value)  # nics as a list of entries
    return None


def write(rows: list[dict[str, str]], fmt: str) -> str:
    """Rows (column -> text) as a file ``read`` takes back."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: safe_cell(v) for k, v in row.items()} for row in rows)
        return out.getvalue()
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(rows, sort_keys=False, allow_unicode=True)
    raise FileRefused(f"the format must be one of {', '.join(FORMATS)}")
