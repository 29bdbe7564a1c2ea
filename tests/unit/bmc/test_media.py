"""Virtual media as a capability: which drivers have it (declared and implemented alike), the URL check every
driver applies before its BMC is asked, and the fake driver's in-memory CD."""

from __future__ import annotations

import pytest

from provisioner.bmc import BmcTarget, BmcUnsupported, BootDevice, Capability, PowerState, get_driver, registry
from provisioner.bmc.fake import fake_bmc, reset_fakes
from provisioner.bmc.media import MAX_URL, VirtualMediaDriver, url_problem


@pytest.fixture(autouse=True)
def _fresh_fakes():
    reset_fakes()
    yield
    reset_fakes()


@pytest.mark.parametrize("name", ["ipmi", "redfish", "fake"])
def test_every_driver_has_the_methods_and_only_redfish_and_fake_declare_them(name):
    driver = get_driver(name, BmcTarget("127.0.0.1", 623, "admin", "pw"))
    assert isinstance(driver, VirtualMediaDriver)
    assert registry.info(name).can(Capability.VIRTUAL_MEDIA) == (name in ("redfish", "fake"))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://192.0.2.1/boot/media/1-ab.iso", ""),
        ("https://[2001:db8::1]:8443/x.iso", ""),
        ("", "empty"),
        ("ftp://192.0.2.1/x.iso", "http:// or https://"),
        ("http:///x.iso", "with a host"),
        ("/boot/media/x.iso", "http:// or https://"),
        ("http://192.0.2.1/a b.iso", "space or a control character"),
        ("http://192.0.2.1/a\tb.iso", "space or a control character"),
        ("http://192.0.2.1/" + "a" * MAX_URL, f"longer than {MAX_URL}"),
    ],
)
def test_url_problem(url, problem):
    found = url_problem(url)
    assert (found == "") if not problem else (problem in found)


def test_the_fake_cd_holds_what_was_inserted_and_boots_once():
    driver = get_driver("fake", BmcTarget("127.0.0.9", 623, "admin", "pw"))
    assert driver.media().inserted is False
    driver.insert_media("http://192.0.2.1/x.iso")
    media = driver.media()
    assert (media.device, media.inserted, media.image) == ("Cd", True, "http://192.0.2.1/x.iso")
    driver.set_boot_device(BootDevice.CD, once=True, uefi=True)
    driver.power_cycle()
    bmc = fake_bmc("127.0.0.9", 623)
    assert bmc.boots == [BootDevice.CD] and bmc.power == PowerState.ON
    assert driver.get_boot_device() == BootDevice.DEFAULT  # once: the next boot is the firmware's again
    assert driver.eject_media() is True
    assert driver.eject_media() is False
    with pytest.raises(BmcUnsupported, match="insert virtual media: the image URL must be http"):
        driver.insert_media("file:///etc/passwd")
    assert bmc.calls.count("insert_media") == 2
