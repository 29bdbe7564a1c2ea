"""The stock scripts: the hardware tests shipped with provisioner (installs/stock_scripts/*.sh), named
``stock-<file name>`` in workflows as library scripts are. A site adds its own tests to the library under
other names (a library script cannot take a stock name); the stock test workflow names these.

Each file starts with its shebang, then header comments the library reads:
``# description: ...``, ``# timeout_s: N``, ``# safe_to_repeat: true``.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

DIRECTORY = Path(__file__).with_name("stock_scripts")
PREFIX = "stock-"
_HEADER = re.compile(r"^#\s*(description|timeout_s|safe_to_repeat):\s*(.*?)\s*$")


def is_stock(name: str) -> bool:
    return name.startswith(PREFIX)


@cache
def _all() -> dict[str, dict]:
    found = {}
    for path in sorted(DIRECTORY.glob("*.sh")):
        body = path.read_text()
        header = {"description": "", "timeout_s": "600", "safe_to_repeat": "false"}
        for line in body.splitlines()[1:20]:
            match = _HEADER.match(line)
            if match:
                header[match[1]] = match[2]
        name = PREFIX + path.stem
        found[name] = {
            "name": name,
            "version": 0,
            "body": body,
            "description": header["description"],
            "timeout_s": int(header["timeout_s"]),
            "safe_to_repeat": header["safe_to_repeat"].lower() == "true",
        }
    return found


def get(name: str) -> dict | None:
    """{"name", "version" (0), "body", "description", "timeout_s", "safe_to_repeat"}, or None."""
    return _all().get(name)


def names() -> list[str]:
    return sorted(_all())
