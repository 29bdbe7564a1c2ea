"""The driver tables in README and docs/drivers.md say what the registry declares, cell for cell."""

from pathlib import Path

import pytest

from provisioner.bmc import registry

ROOT = Path(__file__).resolve().parents[3]
HEADERS = {"bios": registry.Capability.BIOS_SETTINGS, "hardware raid": registry.Capability.HARDWARE_RAID}


def _table(path: Path) -> dict[str, dict[registry.Capability, bool]]:
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| driver | power |"))
    header = [cell.strip().lower() for cell in lines[start].strip("|").split("|")][1:]
    columns = [HEADERS.get(name) or registry.Capability(name.replace(" ", "_")) for name in header]
    table = {}
    for line in lines[start + 2 :]:
        if not line.startswith("| `"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0].strip("`")] = {c: cell == "yes" for c, cell in zip(columns, cells[1:], strict=True)}
    return table


@pytest.mark.parametrize("document", ["README.md", "docs/drivers.md"])
def test_the_driver_table_matches_the_registry(document):
    table = _table(ROOT / document)
    assert set(table) == {d.name for d in registry.BUILT_IN}
    for driver in registry.BUILT_IN:
        said = table[driver.name]
        assert said == {c: c in driver.capabilities for c in said}, f"{document}: {driver.name}"
