"""Hardware RAID through the Redfish driver, against sushy-tools' emulator with two storage subsystems
(conftest.STORAGE). The emulator keeps a volume's name and size but not its RAID type or drive links, so what
the BMC was told is read from the emulator's journal of POST bodies."""

from __future__ import annotations

import pytest

from provisioner.bmc import BmcUnsupported, RaidLevel, VolumeRequest, get_driver
from provisioner.bmc.guard import GuardedDriver

from .conftest import DRIVE_BYTES, FAKE_SYSTEM, STORAGE

PERC = "RAID.Integrated.1-1"


def drive_path(controller: str, drive: str) -> str:
    return f"/redfish/v1/Systems/{FAKE_SYSTEM}/Storage/{controller}/Drives/{drive}"


def test_storage_lists_controllers_and_their_drives(redfish_emulator):
    controllers = {c.id: c for c in get_driver("redfish", redfish_emulator.target()).storage()}
    assert {cid: [d.id for d in c.drives] for cid, c in controllers.items()} == STORAGE
    assert {d.capacity_bytes for d in controllers[PERC].drives} == {DRIVE_BYTES}


def test_a_raid1_volume_is_posted_with_its_drives_and_read_back(redfish_emulator):
    driver = get_driver("redfish", redfish_emulator.target())
    request = VolumeRequest(RaidLevel.RAID1, "os-mirror", ("Disk.Bay.0", "Disk.Bay.1"), controller=PERC)
    result = driver.create_volume(request)
    assert (result.controller, result.created, result.drives, result.task) == (
        PERC, True, ("Disk.Bay.0", "Disk.Bay.1"), "",
    )  # fmt: skip
    assert redfish_emulator.posted_volumes()[-1] == {
        "path": f"/redfish/v1/Systems/{FAKE_SYSTEM}/Storage/{PERC}/Volumes",
        "body": {
            "Name": "os-mirror",
            "RAIDType": "RAID1",
            "Links": {
                "Drives": [{"@odata.id": drive_path(PERC, "Disk.Bay.0")}, {"@odata.id": drive_path(PERC, "Disk.Bay.1")}]
            },
        },
    }
    volumes = {v.name: v for c in driver.storage() if c.id == PERC for v in c.volumes}
    assert volumes["os-mirror"].id == result.volume and volumes["os-mirror"].capacity_bytes == DRIVE_BYTES

    # Again (a retried step): the volume of that name is found, nothing is posted.
    posted = len(redfish_emulator.posted_volumes())
    again = driver.create_volume(request)
    assert (again.created, again.volume) == (False, result.volume)
    assert len(redfish_emulator.posted_volumes()) == posted


def test_all_takes_every_drive_of_the_controller_with_a_size_through_the_guard(
    redfish_emulator, redis_client, redis_prefix
):
    redfish = get_driver("redfish", redfish_emulator.target())
    driver = GuardedDriver(redfish, redis_client, min_interval_s=0, key_prefix=redis_prefix)
    result = driver.create_volume(VolumeRequest(RaidLevel.RAID0, "scratch", ("all",), 10 * 2**30, "AHCI.1"))
    assert result.drives == tuple(STORAGE["AHCI.1"])
    body = redfish_emulator.posted_volumes()[-1]["body"]
    assert body["CapacityBytes"] == 10 * 2**30 and len(body["Links"]["Drives"]) == 2
    assert [
        v.capacity_bytes for c in driver.storage() if c.id == "AHCI.1" for v in c.volumes if v.name == "scratch"
    ] == [10 * 2**30]


@pytest.mark.parametrize(
    ("request_", "said"),
    [
        (VolumeRequest(RaidLevel.RAID1, "x"), f"2 storage controllers have drives ({PERC}, AHCI.1): name the"),
        (VolumeRequest(RaidLevel.RAID1, "x", controller="NVMe.1"), f"no storage controller 'NVMe.1' (it has: {PERC}"),
        (
            VolumeRequest(RaidLevel.RAID1, "x", ("Disk.Bay.0", "Disk.Bay.9"), controller=PERC),
            f"controller '{PERC}' has no drive 'Disk.Bay.9' (it has: Disk.Bay.0, Disk.Bay.1, Disk.Bay.2, Disk.Bay.3)",
        ),
        (VolumeRequest(RaidLevel.RAID5, "x", ("all",), controller="AHCI.1"), "RAID5 needs at least 3 drives, not 2"),
    ],
)  # fmt: skip
def test_what_the_controller_cannot_do_is_refused_before_any_post(redfish_emulator, request_, said):
    posted = len(redfish_emulator.posted_volumes())
    with pytest.raises(BmcUnsupported) as refused:
        get_driver("redfish", redfish_emulator.target()).create_volume(request_)
    assert said in str(refused.value) and not refused.value.retryable
    assert len(redfish_emulator.posted_volumes()) == posted
