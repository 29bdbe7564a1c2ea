"""Virtual media through the Redfish driver, against sushy-tools' emulator on 127.0.0.1: the emulator fetches the
ISO from a loopback HTTP server when it is inserted, as a BMC does, and reports it in its VirtualMedia resource."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest
import sushy

from provisioner.bmc import BmcUnsupported, BootDevice, get_driver
from provisioner.bmc.guard import GuardedDriver
from provisioner.bmc.media import url_problem
from provisioner.bmc.redfish import RedfishDriver
from tests.integration.bmc.conftest import FAKE_SYSTEM


@pytest.fixture(scope="module")
def iso_server(tmp_path_factory):
    """A plain HTTP server with two ISOs; it records each path asked for."""
    root = tmp_path_factory.mktemp("isos")
    (root / "one.iso").write_bytes(b"CD001" * 1000)
    (root / "two.iso").write_bytes(b"CD002" * 1000)
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.asked = asked
    yield server
    server.shutdown()
    server.server_close()


def emulated_cd(emulator) -> dict:
    """The emulated system's CD device, read straight from the emulator's resource."""
    root = RedfishDriver(emulator.target())._system()._conn
    return root.get(f"/redfish/v1/Systems/{FAKE_SYSTEM}/VirtualMedia/Cd").json()


def test_insert_shows_inserted_with_the_url_and_eject_empties_it(redfish_emulator, iso_server):
    driver = get_driver("redfish", redfish_emulator.target())
    driver.eject_media()
    url = f"{iso_server.url}/one.iso"
    driver.insert_media(url)
    cd = emulated_cd(redfish_emulator)
    assert cd["Inserted"] is True and cd["Image"] == url
    assert "/one.iso" in iso_server.asked  # the BMC fetched it
    media = driver.media()
    assert (media.device, media.inserted, media.image) == ("Cd", True, url)
    assert driver.eject_media() is True
    cd = emulated_cd(redfish_emulator)
    assert cd["Inserted"] is False and not cd["Image"]
    assert driver.eject_media() is False  # nothing left: nothing sent, no error
    assert driver.media().inserted is False


def test_the_same_url_twice_is_one_insert_and_another_replaces_it(redfish_emulator, iso_server):
    driver = get_driver("redfish", redfish_emulator.target())
    driver.eject_media()
    one, two = f"{iso_server.url}/one.iso", f"{iso_server.url}/two.iso"
    iso_server.asked.clear()
    driver.insert_media(one)
    driver.insert_media(one)  # a retried step: the BMC holds it already
    assert iso_server.asked.count("/one.iso") == 1
    driver.insert_media(two)  # ejects the first, which the emulator would otherwise refuse
    assert emulated_cd(redfish_emulator)["Image"] == two
    driver.eject_media()


def test_boot_from_the_virtual_cd_once(redfish_emulator):
    driver = get_driver("redfish", redfish_emulator.target())
    driver.set_boot_device(BootDevice.CD, once=True, uefi=True)
    boot = RedfishDriver(redfish_emulator.target())._system().boot
    assert (boot.target, boot.mode) == (sushy.BootSource.CD, sushy.BootSourceOverrideMode.UEFI)
    assert driver.get_boot_device() == BootDevice.CD
    sent = [c for c in redfish_emulator.changes() if c["path"].endswith(FAKE_SYSTEM) and c["method"] == "PATCH"]
    boot = sent[-1]["body"]["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"], boot["BootSourceOverrideMode"]) == (
        "Cd",
        "Once",
        "UEFI",
    )
    driver.set_boot_device(BootDevice.DISK, once=False)


def test_a_url_the_bmc_cannot_fetch_is_a_clear_refusal(redfish_emulator, iso_server):
    driver = get_driver("redfish", redfish_emulator.target())
    driver.eject_media()
    with pytest.raises(BmcUnsupported) as caught:
        driver.insert_media(f"{iso_server.url}/missing.iso")
    message = str(caught.value)
    assert f"127.0.0.1:{redfish_emulator.port}" in message and "insert virtual media refused with HTTP 400" in message
    assert "404" in message  # the emulator says what the image server answered
    assert driver.media().inserted is False


@pytest.mark.parametrize(
    "url",
    ["", "ftp://127.0.0.1/x.iso", "http:///x.iso", "http://127.0.0.1/a b.iso", "http://127.0.0.1/\x00", "x" * 2000],
)
def test_a_url_no_bmc_can_take_is_refused_before_the_bmc_is_asked(redfish_emulator, url):
    assert url_problem(url)
    driver = get_driver("redfish", redfish_emulator.target(password="not-asked"))
    with pytest.raises(BmcUnsupported, match="insert virtual media: the image URL"):
        driver.insert_media(url)  # a wrong password would be an auth error had the BMC been asked


def test_the_guard_passes_media_calls_through(redfish_emulator, iso_server, redis_url):
    import redis

    guarded = GuardedDriver(
        get_driver("redfish", redfish_emulator.target()), redis.Redis.from_url(redis_url), min_interval_s=0
    )
    guarded.insert_media(f"{iso_server.url}/one.iso")
    assert guarded.media().inserted is True
    assert guarded.eject_media() is True


def test_ipmi_and_its_refusal_name_redfish():
    from provisioner.bmc import BmcTarget

    driver = get_driver("ipmi", BmcTarget("127.0.0.1", 623, "u", "p"))
    for call in (lambda: driver.insert_media("http://127.0.0.1/x.iso"), driver.eject_media, driver.media):
        with pytest.raises(BmcUnsupported, match="IPMI has no command to insert virtual media: it needs Redfish"):
            call()
