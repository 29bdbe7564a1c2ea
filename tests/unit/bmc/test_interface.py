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
    RaidLevel,
    StorageDriver,
    VolumeRequest,
    get_driver,
    raid_drive_count_problem,
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


@pytest.mark.parametrize(("name", "label"), [("ipmi", "IPMI"), ("fake", "fake")])
def test_drivers_without_a_storage_service_refuse_hardware_raid_saying_it_needs_redfish(name, label):
    # Refused before any traffic: nothing listens on this port, and the error is not "unreachable".
    driver = get_driver(name, BmcTarget("127.0.0.1", 1, "admin", SECRET, timeout_s=0.2))
    assert isinstance(driver, StorageDriver)
    request = VolumeRequest(RaidLevel.RAID1, "system", ("Disk.Bay.0", "Disk.Bay.1"))
    for call in (driver.storage, lambda: driver.create_volume(request)):
        with pytest.raises(BmcUnsupported) as refused:
            call()
        assert str(refused.value) == (
            f"BMC 127.0.0.1:1: the {label} driver has no storage service: hardware RAID needs Redfish"
        )
        assert not refused.value.retryable and refused.value.reason == "BmcUnsupported"


@pytest.mark.parametrize(
    ("level", "count", "problem"),
    [
        (RaidLevel.RAID0, 1, ""),
        (RaidLevel.RAID1, 1, "RAID1 needs at least 2 drives, not 1"),
        (RaidLevel.RAID1, 2, ""),
        (RaidLevel.RAID5, 2, "RAID5 needs at least 3 drives, not 2"),
        (RaidLevel.RAID10, 6, ""),
        (RaidLevel.RAID10, 5, "RAID10 mirrors drives in pairs: it needs an even number of drives, not 5"),
    ],
)
def test_raid_drive_counts(level, count, problem):
    assert raid_drive_count_problem(level, count) == problem
