"""Installs that boot by virtual media, run by the real engine (PostgreSQL, Redis, RQ) against sushy-tools' Redfish
emulator, with daphne serving the ISO: the emulator fetches it by URL as a BMC does. The ISO carries the boot
credential and the command line a network boot would get; the media is ejected and the ISO removed when the
install ends, whether it succeeded, failed or was cancelled."""

from __future__ import annotations

import io
import subprocess
import urllib.error
import urllib.request

import pytest
from django.core.management import call_command

from audit.models import AuditEntry
from audit.service import Actor
from installs import callbacks, engine, library, media, render
from installs import workflow as wf
from installs.batches import InstallRefused
from installs.models import InstallState, StepState
from inventory import power
from inventory.models import BMC
from inventory.services import set_protected
from provisioner.bmc.redfish import RedfishDriver
from tests.integration.bmc.conftest import FAKE_SYSTEM, RedfishEmulator
from tests.integration.installs.test_hardware_raid import on_redfish
from tests.servers import Daphne

KERNEL = b"\x4d\x5a fake kernel " * 64
INITRD = b"070701 fake initrd " * 256


@pytest.fixture
def redfish_emulator(tmp_path):
    emulator = RedfishEmulator(tmp_path)
    yield emulator
    emulator.stop()


@pytest.fixture
def web(tmp_path):
    daphne = Daphne(tmp_path)
    daphne.start()
    yield daphne
    daphne.stop()


@pytest.fixture
def site_lab(lab, web):
    lab.site.base_url = web.url
    lab.site.save()
    (lab.tftp_root / "memory-os").mkdir()
    (lab.tftp_root / "memory-os/vmlinuz").write_bytes(KERNEL)
    (lab.tftp_root / "memory-os/initrd.img").write_bytes(INITRD)
    return lab


def vmedia_profile(lab):
    profile = lab.image_profile()
    profile.workflow = "stock-image-virtual-media"
    profile.save()
    return profile


def cd_of(emulator) -> dict:
    conn = RedfishDriver(emulator.target())._system()._conn
    return conn.get(f"/redfish/v1/Systems/{FAKE_SYSTEM}/VirtualMedia/Cd").json()


def boots_asked(emulator) -> list[tuple[str, str]]:
    """(target, enabled) of every boot override the emulator was sent, in order."""
    return [
        (c["body"]["Boot"].get("BootSourceOverrideTarget"), c["body"]["Boot"].get("BootSourceOverrideEnabled"))
        for c in emulator.changes()
        if c["method"] == "PATCH" and c["path"].endswith(FAKE_SYSTEM) and "Boot" in (c["body"] or {})
    ]


def iso_file(lab, path: str, tmp_path) -> str:
    out = tmp_path / path.replace("/", "_")
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(lab), "-extract", path, str(out)],
                   check=True, capture_output=True)  # fmt: skip
    return out.read_text()


def booted_to_the_agent(lab, emulator):
    machine = lab.machine()
    on_redfish(machine, emulator)
    install = lab.install([machine], vmedia_profile(lab))
    lab.run_jobs()  # check the BMC, build and insert the ISO, boot from the CD once, power cycle, wait
    install.refresh_from_db()
    assert install.state == InstallState.BOOTING, install.failure_message
    return machine, install


def test_a_whole_install_boots_the_iso_and_ends_with_the_media_ejected(site_lab, redfish_emulator, web, tmp_path):
    lab = site_lab
    machine, install = booted_to_the_agent(lab, redfish_emulator)
    url = media.iso_url(install)
    token = render.boot_token(install)
    assert url.startswith(f"{web.url}/boot/media/{install.pk}-") and token not in url
    cd = cd_of(redfish_emulator)
    assert (cd["Inserted"], cd["Image"]) == (True, url)  # the emulator fetched it from daphne
    assert boots_asked(redfish_emulator)[-1] == ("Cd", "Once")
    path = media.iso_path(install)
    config = iso_file(path, "/boot/grub/grub.cfg", tmp_path)
    assert f"provisioner.token={token}" in config and f"provisioner.url={web.url}" in config
    assert f"BOOTIF=01-{machine.pxe_nic.mac.replace(':', '-')}" in config
    assert iso_file(path, "/boot/initrd", tmp_path).encode() == INITRD
    assert install.steps.get(kind="insert_media").result == {"iso_bytes": path.stat().st_size}

    facts = {"nics": [{"mac": machine.pxe_nic.mac}], "disks": [{"path": "/dev/sda", "size_bytes": 10**10}]}
    callbacks.agent_register(install.pk, facts, boot_credential=True)
    while task := callbacks.agent_next_task(install.pk)["task"]:
        callbacks.agent_result(install.pk, task["id"], True, "", "", "")
    lab.run_jobs()  # eject, boot from disk, reboot
    install.refresh_from_db()
    eject = install.steps.get(kind="eject_media")
    assert eject.state == StepState.SUCCEEDED, install.failure_message
    assert eject.result == {"ejected": True, "iso_removed": True}
    assert cd_of(redfish_emulator)["Inserted"] is False
    assert not path.exists()
    assert boots_asked(redfish_emulator)[-1] == ("Hdd", "Continuous")
    # The name in daphne's access log is masked; the credential never reached it.
    log = (tmp_path / "daphne.log").read_text()
    assert f"/boot/media/{install.pk}-[name]" in log
    assert media.iso_name(install) not in log and token not in log


@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_an_install_that_ends_early_ejects_the_media_and_removes_the_iso(site_lab, redfish_emulator, end):
    lab = site_lab
    _, install = booted_to_the_agent(lab, redfish_emulator)
    path = media.iso_path(install)
    assert path.exists() and cd_of(redfish_emulator)["Inserted"] is True
    if end == "failed":
        with engine.transaction.atomic():
            engine.fail(engine.lock(install.pk), "BootTimeout", "The machine never booted.")
    else:
        engine.cancel(install.pk, actor=Actor.system("test"))
    lab.run_jobs()  # the cleanup
    install.refresh_from_db()
    assert install.state == end and install.cleaned_at is not None
    assert cd_of(redfish_emulator)["Inserted"] is False
    assert not path.exists()
    assert boots_asked(redfish_emulator)[-1] == ("Hdd", "Continuous")  # the CD boot is no longer armed
    notes = [e.message for e in install.events.all()]
    assert any("virtual media ISO removed, virtual media ejected" in n for n in notes), notes


def test_the_iso_is_served_in_ranges_while_the_install_is_active_and_not_after(site_lab, redfish_emulator, web):
    lab = site_lab
    _, install = booted_to_the_agent(lab, redfish_emulator)
    url = media.iso_url(install)
    whole = media.iso_path(install).read_bytes()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=32768-32773"})) as r:
        assert (r.status, r.headers["Content-Range"], r.read()) == (
            206,
            f"bytes 32768-32773/{len(whole)}",
            whole[32768:32774],
        )
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as r:
        assert (r.status, r.headers["Content-Length"], r.headers["Accept-Ranges"]) == (200, str(len(whole)), "bytes")
    wrong = url[:-8] + ("0" if url[-8] != "0" else "1") + url[-7:]
    for other in (wrong, f"{web.url}/boot/media/{install.pk + 1000}-{'0' * 40}.iso"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(other)
        assert caught.value.code == 404
    engine.cancel(install.pk, actor=Actor.system("test"))
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url)  # the install ended: not served, even before the cleanup removes it
    assert caught.value.code == 404


def test_a_machine_whose_driver_lacks_virtual_media_is_refused_when_requested(site_lab):
    machine = site_lab.machine()
    bmc = machine.bmc
    bmc.driver = "ipmi"
    bmc.save()
    with pytest.raises(InstallRefused) as caught:
        site_lab.install([machine], vmedia_profile(site_lab))
    message = str(caught.value)
    assert "the IPMI (iLO, iDRAC, generic) driver cannot do virtual media (boot an ISO by URL)" in message
    assert "stock-image-virtual-media" in message and "insert_media" in message
    assert message.count("cannot do virtual media") == 1  # once, not once per task


def test_a_kernel_given_as_a_url_fails_the_install_saying_why(site_lab, redfish_emulator):
    lab = site_lab
    profile = vmedia_profile(lab)
    profile.kernel = "http://127.0.0.1:9/vmlinuz"
    profile.save()
    machine = lab.machine()
    on_redfish(machine, redfish_emulator)
    install = lab.install([machine], profile)
    lab.run_jobs()
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "MediaBuildFailed")
    assert "is a URL" in install.failure_message and "built from files in the TFTP root" in install.failure_message
    assert cd_of(redfish_emulator)["Inserted"] is False  # nothing was inserted


def test_a_technician_reads_and_ejects_media_left_behind(site_lab, redfish_emulator):
    lab = site_lab
    machine, install = booted_to_the_agent(lab, redfish_emulator)
    actor = Actor.system("tech")
    line = power.perform(machine, "media", actor)
    assert line == f"{machine.hostname}: virtual CD (Cd) holds {lab.site.base_url}/boot/media/{install.pk}-[name].iso"
    assert media.iso_name(install) not in line  # the name opens the ISO, which holds the boot credential
    out = io.StringIO()
    call_command("bmc", machine.hostname, "eject", stdout=out)
    assert "virtual media ejected" in out.getvalue()
    assert cd_of(redfish_emulator)["Inserted"] is False
    assert power.perform(machine, "eject", actor) == f"{machine.hostname}: no virtual media to eject"
    assert AuditEntry.objects.filter(action="machine.eject", object_id=str(machine.pk)).count() == 2


def test_a_machine_protected_before_its_media_is_inserted_refuses_it(site_lab, redfish_emulator):
    lab = site_lab
    machine = lab.machine()
    on_redfish(machine, redfish_emulator)
    install = lab.install([machine], vmedia_profile(lab))
    set_protected(machine.pk, True, actor=Actor.system("admin"), reason="went into production")
    lab.run_jobs()
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "MachineProtected")
    assert "boot from a CD or virtual media refused" in install.failure_message
    assert cd_of(redfish_emulator)["Inserted"] is False
    assert not media.iso_path(install).exists()  # refused before the ISO was built


def test_a_driver_changed_after_the_request_is_refused_before_anything_is_built(site_lab):
    lab = site_lab
    machine = lab.machine()
    # Without check_bmc, which would time out first against an IPMI address nothing answers at.
    text = wf.stock_text_named("stock-image-virtual-media").replace("name: stock-image-virtual-media", "name: no-check")
    library.save_workflow(text.replace("      - check_bmc\n", ""), Actor.system("admin"))
    profile = vmedia_profile(lab)
    profile.workflow = "no-check"
    profile.save()
    install = lab.install([machine], profile)
    BMC.objects.filter(machine=machine).update(driver="ipmi")
    lab.run_jobs()  # the insert is refused, then the cleanup
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "CapabilityMissing")
    assert "cannot do virtual media" in install.failure_message and "Nothing was sent" in install.failure_message
    assert not media.iso_path(install).exists()
    assert install.cleaned_at is not None
    assert not install.events.filter(message__contains="Could not eject").exists()  # nothing was inserted


def test_a_late_cleanup_leaves_the_next_installs_media_alone(site_lab, redfish_emulator):
    lab = site_lab
    machine, first = booted_to_the_agent(lab, redfish_emulator)
    engine.cancel(first.pk, actor=Actor.system("test"))
    lab.run_jobs()  # the first install's cleanup
    second = lab.install([machine], vmedia_profile(lab))
    lab.run_jobs()
    second.refresh_from_db()
    assert second.state == InstallState.BOOTING, second.failure_message
    media.iso_path(first).write_bytes(b"left behind")  # as if the first cleanup had died before removing it
    assert engine.cleanup(first.pk) == "a newer install owns the machine's boot config"  # a lost job, run late
    assert not media.iso_path(first).exists()
    assert media.iso_path(second).exists()
    assert cd_of(redfish_emulator)["Image"] == media.iso_url(second)
