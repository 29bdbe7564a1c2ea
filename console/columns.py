"""The machine list's columns a person may hide, by key, in the order the list shows them. The hostname is always
shown (it is the row's link); the CSV export has every column whatever the page shows."""

from __future__ import annotations

MACHINE_COLUMNS = {
    "site": "Site / rack",
    "tags": "Tags",
    "status": "Status",
    "power": "Power",
    "reach": "Reach",
    "install": "Last install",
    "profile": "Profile",
    "hardware": "Hardware",
    "vendor": "Vendor / model",
    "serial": "Serial",
    "mac": "PXE MAC",
    "bmc": "BMC",
}
MACHINE_COLUMN_KEYS = tuple(MACHINE_COLUMNS)
