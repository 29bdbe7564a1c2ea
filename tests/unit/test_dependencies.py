"""The dependency pins stay honest: every direct dependency's upper bound is the version in
requirements.lock, and the tests run on exactly the locked versions, which make run installs too."""

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            pins[canonicalize_name(name)] = pinned
    return pins


def direct() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    return [Requirement(s) for s in specs]


def test_every_upper_bound_is_the_locked_version():
    pins = locked()
    wrong = []
    for req in direct():
        pinned = pins.get(canonicalize_name(req.name))
        uppers = [s.version for s in req.specifier if s.operator in ("<=", "==")]
        if pinned is None or uppers != [pinned] or any(s.operator == "<" for s in req.specifier):
            wrong.append(f"{req} (locked: {pinned})")
    assert wrong == [], "upper bounds that are not the tested version: " + "; ".join(wrong)


def test_the_tests_run_on_the_locked_versions():
    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    drift = {name: (pinned, installed(name)) for name, pinned in locked().items() if installed(name) != pinned}
    assert drift == {}, "installed versions differ from requirements.lock (locked, installed): run make test"
