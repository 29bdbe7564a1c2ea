"""The values, target and errors every driver speaks, and the Django boundary."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.bmc import (
    BmcAuthError,
    BmcBusy,
    BmcDriver,
    BmcError,
    BmcTarget,
    BmcTimeout,
    BmcUnreachable,
    BmcUnsupported,
    BootDevice,
    PowerState,
    get_driver,
)

ROOT = Path(__file__).resolve().parents[3]
SECRET = "pw-Never-Shown-42"


def test_enum_values_are_lower_snake_strings():
    assert [s.value for s in PowerState] == ["on", "off", "unknown"]
    assert {d.value for d in BootDevice} >= {"pxe", "disk", "default"}
    assert PowerState("on") is PowerState.ON
    assert f"{BootDevice.PXE}" == "pxe"


def test_target_is_frozen_and_hides_the_password():
    target = BmcTarget("10.0.0.5", 623, "admin", SECRET, timeout_s=3)
    assert SECRET not in repr(target)
    assert SECRET not in str(target)
    assert "10.0.0.5" in repr(target)
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.password = "other"  # type: ignore[misc]
    assert target.endpoint == "10.0.0.5:623"
    assert BmcTarget("fd00::5", 623, "a", "b").endpoint == "[fd00::5]:623"


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (BmcUnreachable, True),
        (BmcTimeout, True),
        (BmcBusy, True),
        (BmcAuthError, False),
        (BmcUnsupported, False),
        (BmcError, False),
    ],
)
def test_errors_say_whether_to_retry_and_name_the_bmc(error, retryable):
    exc = error("10.0.0.5:623", "something happened")
    assert exc.retryable is retryable
    assert str(exc) == "BMC 10.0.0.5:623: something happened"
    assert isinstance(exc, BmcError)
    assert exc.reason == error.__name__


def test_timeout_is_a_kind_of_unreachable():
    assert issubclass(BmcTimeout, BmcUnreachable)


@pytest.mark.parametrize("name", ["ipmi", "redfish", "fake"])
def test_every_driver_implements_the_protocol(name):
    driver = get_driver(name, BmcTarget("127.0.0.1", 623, "admin", SECRET))
    assert isinstance(driver, BmcDriver)
    assert SECRET not in repr(driver)


def test_unknown_driver_name_is_refused():
    with pytest.raises(ValueError, match="unknown BMC driver 'smoke-signals'"):
        get_driver("smoke-signals", BmcTarget("127.0.0.1", 623, "admin", SECRET))


def test_bmc_and_lab_load_no_django_in_a_fresh_interpreter():
    code = (
        "import sys\n"
        "import provisioner.bmc, provisioner.bmc.ipmi, provisioner.bmc.redfish, provisioner.bmc.fake\n"
        "import provisioner.bmc.guard, provisioner.lab.bmc\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("address", "port", "timeout_s"), [("", 623, 1), ("10.0.0.5", 0, 1), ("10.0.0.5", 70000, 1), ("10.0.0.5", 623, 0)]
)
def test_target_refuses_nonsense(address, port, timeout_s):
    with pytest.raises(ValueError):
        BmcTarget(address, port, "admin", SECRET, timeout_s=timeout_s)
