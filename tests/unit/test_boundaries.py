"""The layout's import rules hold for every module and every import (tests/boundaries.py says what they are),
and the hardware edge loads no Django when it runs."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import boundaries

ROOT = Path(__file__).resolve().parents[2]


def test_every_import_follows_the_layer_table():
    assert boundaries.forbidden(boundaries.all_imports(ROOT)) == []


def test_no_modules_import_each_other():
    assert boundaries.cycles(boundaries.all_imports(ROOT)) == []


def test_every_module_has_a_layer():
    unplaced = [m for m in boundaries.sources(ROOT) if boundaries.layer_of(m) is None and m != "provisioner"]
    assert unplaced == []


def test_every_top_level_package_is_read():
    """A new package beside the others must join the table, or its imports would go unread."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench", "scripts"}
    assert packages <= set(boundaries.PACKAGES)


# --- the check itself: each rule, broken once, is reported ------------------------------------------------


def imports_of(module: str, source: str, known=()) -> list:
    return boundaries.imports(module, source, is_package=False, known={module, *known})


def test_an_app_importing_an_app_above_it_is_reported_even_inside_a_function():
    found = imports_of("inventory.views", "def f():\n    from installs.engine import cancel\n", ["installs.engine"])
    problems = boundaries.forbidden(found)
    assert problems == [
        "inventory.views:2 imports installs.engine (inside a function): inventory may not import installs"
    ]


@pytest.mark.parametrize(
    "module, source, said",
    [
        ("audit.views", "import installs.models\n", "audit may not import installs"),
        ("installs.engine", "from console.views import home\n", "installs may not import console"),
        ("core.queues", "from inventory.models import Site\n", "core may not import inventory"),
        ("provisioner.bmc.ipmi", "from django.conf import settings\n", "never imports django"),
        (
            "provisioner.pxe.bootconfig",
            "from inventory.models import NIC\n",
            "provisioner.pxe may not import inventory",
        ),
        ("provisioner.agent.loop", "import requests\n", "only the standard library"),
        ("provisioner.agent.loop", "from provisioner.pxe import mac\n", "provisioner.agent may not import"),
        (
            "inventory.models",
            "import importlib\nimportlib.import_module('installs.models')\n",
            "may not import installs",
        ),
        ("inventory.models", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import installs\n", "installs"),
    ],
)
def test_each_forbidden_arrow_is_reported(module, source, said):
    problems = boundaries.forbidden(imports_of(module, source))
    assert len(problems) == 1 and said in problems[0]


def test_allowed_arrows_pass():
    found = imports_of(
        "installs.engine", "import json\nfrom inventory.models import Machine\nfrom provisioner import pxe\n"
    )
    found += imports_of("provisioner.agent.loop", "import json, urllib.request\nfrom provisioner.agent import host\n")
    assert boundaries.forbidden(found) == []


def test_a_loop_between_modules_is_reported_and_a_package_reexport_is_not():
    known = {"installs.engine", "installs.batches", "provisioner.bmc", "provisioner.bmc.ipmi", "provisioner.bmc.base"}

    def read(module, source, is_package=False):
        return boundaries.imports(module, source, is_package=is_package, known=known)

    found = read("installs.engine", "def f():\n    from installs import batches\n")
    found += read("installs.batches", "from . import engine\n")
    # The package re-exports its submodule, which names its sibling in full: no loop.
    found += read("provisioner.bmc", "from .ipmi import IpmiDriver\n", is_package=True)
    found += read("provisioner.bmc.ipmi", "import provisioner.bmc.base as base\n")
    assert boundaries.cycles(found) == [["installs.batches", "installs.engine"]]


def test_a_sibling_imported_through_the_package_that_imports_this_module_is_a_loop():
    known = {"provisioner.bmc", "provisioner.bmc.ipmi", "provisioner.bmc.base"}
    found = boundaries.imports("provisioner.bmc", "from .ipmi import IpmiDriver\n", is_package=True, known=known)
    found += boundaries.imports("provisioner.bmc.ipmi", "from . import base\n", is_package=False, known=known)
    assert boundaries.cycles(found) == [["provisioner.bmc", "provisioner.bmc.ipmi"]]


def test_an_arrow_added_to_a_copy_of_this_tree_fails_the_check(tmp_path):
    """The real tree with one line added: the check that passes above fails on it."""
    for package in boundaries.PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "stock")
        )
    models = tmp_path / "inventory" / "models.py"
    models.write_text(
        models.read_text() + "\n\ndef _latest():\n    from installs.models import Install\n\n    return Install\n"
    )
    problems = boundaries.forbidden(boundaries.all_imports(tmp_path))
    assert (
        len(problems) == 1 and problems[0].startswith("inventory.models:") and "may not import installs" in problems[0]
    )


# --- at run time --------------------------------------------------------------------------------------------

PLAIN_PACKAGES = ["bmc", "pxe", "agent", "lab", "memory_os"]


@pytest.mark.parametrize("package", PLAIN_PACKAGES)
def test_plain_package_imports_without_django(package):
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module('provisioner.{package}')\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'channels', 'rq', 'config', 'core'))\n"
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
