"""The agent ships alone in a zipapp to a memory OS that has python3 and nothing else."""

import subprocess
import sys
import zipfile
from pathlib import Path

from provisioner.agent import build

ROOT = Path(__file__).resolve().parents[3]


def test_agent_modules_import_only_the_standard_library():
    code = (
        "import importlib, pkgutil, sys\n"
        "import provisioner.agent as pkg\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "names = {m.split('.')[0] for m in sys.modules}\n"
        "bad = sorted(n for n in names if n not in sys.stdlib_module_names and n not in sys.builtin_module_names\n"
        "             and n not in ('provisioner', '__main__') and not n.startswith('_'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env={}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_zipapp_runs_with_a_bare_python(tmp_path):
    pyz = build.build(tmp_path / "dist" / "provisioner-agent.pyz")
    names = zipfile.ZipFile(pyz).namelist()
    assert "__main__.py" in names and "provisioner/agent/tasks/image.py" in names
    assert not any(n.startswith(("tests/", "provisioner/bmc", "config/")) for n in names)
    # -I and an empty cwd: nothing from the repository or site-packages can be picked up.
    done = subprocess.run(
        ["python3", "-I", str(pyz), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=30, env={}
    )
    assert done.returncode == 0, done.stderr
    assert "--sandbox DIR" in done.stdout and "--token-file" in done.stdout


def test_build_command_writes_the_archive(tmp_path):
    out = tmp_path / "agent.pyz"
    done = subprocess.run(
        [sys.executable, "-m", "provisioner.agent.build", "-o", str(out)], cwd=ROOT, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"#!/usr/bin/env python3\n")
