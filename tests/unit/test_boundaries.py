"""The hardware edge (bmc, pxe, agent) stays plain Python: importing it loads no Django."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAIN_PACKAGES = [p for p in ("bmc", "pxe", "agent", "lab") if (ROOT / "provisioner" / p / "__init__.py").exists()]


@pytest.mark.parametrize("package", PLAIN_PACKAGES)
def test_plain_package_imports_without_django(package):
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module('provisioner.{package}')\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"provisioner.{package} loaded {result.stdout.strip()}"


def test_the_boundary_check_covers_the_hardware_packages():
    assert {"bmc", "pxe"} <= set(PLAIN_PACKAGES)
