"""A site's TFTP root while it discovers unknown machines: kept in line by the reconcile job on the site's queue
(real Redis and RQ, a real TFTP root), read by the lab's PXE ROM as a machine would read it."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from audit.service import Actor
from installs import discovery, discovery_boot, engine
from installs.models import InstallState
from inventory.models import NIC, OSProfile, Site
from provisioner import pxe
from provisioner.lab.firmware import BootKind, resolve
from tests.conftest import make_machine, make_user
from tests.integration.installs.test_discovery import Agent

UNKNOWN = "52:54:00:d1:5c:77"


def switch(site: Site, on: bool, memory_os: OSProfile | None = None) -> None:
    site.discovery = on
    site.provisioning_networks = "127.0.0.0/8"
    site.memory_os = memory_os or site.memory_os
    site.full_clean()
    site.save()


def boots(lab, mac: str) -> set[BootKind]:
    """What the MAC boots, by BIOS and by UEFI."""
    return {resolve(lab.tftp_root, firmware, mac)[1].kind for firmware in ("bios", "uefi")}


def local_files(lab) -> set[str]:
    return pxe.local_macs(lab.tftp_root)


@pytest.fixture
def fleet(lab):
    """Two racked machines (one with a second NIC), one in no rack, and one armed for an install."""
    first, second, armed = lab.machine(), lab.machine(), lab.machine()
    NIC.objects.create(machine=first, mac="52:54:00:d1:5c:10")
    unracked = make_machine(position_u=None)
    install = lab.install([armed])
    lab.run_jobs()
    assert boots(lab, armed.pxe_nic.mac) == {BootKind.PRESEED}
    pxe.write_defaults(lab.tftp_root)  # what the PXE server's setup writes (docs/pxe-server.md)
    return {"machines": [first, second, unracked], "armed": armed, "install": install}


def test_switching_discovery_on_boots_unknown_macs_into_discovery_and_known_ones_locally(lab, fleet):
    install_file = lab.per_mac_files(fleet["armed"])
    before = {name: (lab.tftp_root / name).read_text() for name in install_file}
    switch(lab.site, True, lab.image_profile())
    lab.run_jobs()

    known = {nic.mac for m in fleet["machines"] for nic in m.nics.all()}
    assert len(known) == 4
    assert local_files(lab) == known, "every known MAC but the armed one has a local-boot file"
    for mac in known:
        assert boots(lab, mac) == {BootKind.LOCAL}
    assert boots(lab, UNKNOWN) == {BootKind.DISCOVER}
    _, target = resolve(lab.tftp_root, "uefi", UNKNOWN)
    assert target.kernel == "/memory-os/vmlinuz" and target.args["provisioner.url"] == "http://127.0.0.1:8000"
    assert target.args["BOOTIF"] == "01-52-54-00-d1-5c-77"
    # The active install's per-MAC files are untouched.
    assert {name: (lab.tftp_root / name).read_text() for name in install_file} == before
    assert boots(lab, fleet["armed"].pxe_nic.mac) == {BootKind.PRESEED}


def test_switching_discovery_off_boots_disks_again_and_removes_the_local_boot_files(lab, fleet):
    switch(lab.site, True, lab.image_profile())
    lab.run_jobs()
    assert local_files(lab)
    install_files = lab.per_mac_files(fleet["armed"])
    switch(lab.site, False)
    lab.run_jobs()
    assert local_files(lab) == set()
    assert (lab.tftp_root / "pxelinux.cfg/default").read_text() == pxe.render_pxelinux_default()
    assert (lab.tftp_root / "grub/grub.cfg").read_text() == pxe.render_grub_default()
    assert boots(lab, UNKNOWN) == {BootKind.LOCAL}
    assert lab.per_mac_files(fleet["armed"]) == install_files and boots(lab, fleet["armed"].pxe_nic.mac) == {
        BootKind.PRESEED
    }


def test_nics_added_and_deleted_get_and_lose_their_files(lab, fleet):
    switch(lab.site, True, lab.image_profile())
    lab.run_jobs()
    machine = fleet["machines"][1]
    nic = NIC.objects.create(machine=machine, mac="52:54:00:d1:5c:20")
    lab.run_jobs()
    assert nic.mac in local_files(lab)
    nic.delete()
    lab.run_jobs()
    assert nic.mac not in local_files(lab)
    macs = {n.mac for n in machine.nics.all()}
    machine.delete()
    lab.run_jobs()
    assert not macs & local_files(lab), "a deleted machine's MACs are unknown again: they discover"


def test_an_install_that_ends_at_a_discovering_site_leaves_a_local_boot_file(lab, fleet):
    switch(lab.site, True, lab.image_profile())
    lab.run_jobs()
    armed = fleet["armed"]
    engine.cancel(fleet["install"].pk, actor=engine.SYSTEM)
    lab.run_jobs()
    fleet["install"].refresh_from_db()
    assert fleet["install"].state == InstallState.CANCELLED and fleet["install"].cleaned_at is not None
    assert armed.pxe_nic.mac in local_files(lab)
    assert boots(lab, armed.pxe_nic.mac) == {BootKind.LOCAL}, "it never takes the discovery path"


def test_an_install_that_ends_elsewhere_still_removes_its_files(lab, fleet):
    engine.cancel(fleet["install"].pk, actor=engine.SYSTEM)
    lab.run_jobs()
    assert lab.per_mac_files(fleet["armed"]) == []


def test_an_accepted_machine_gets_its_local_boot_file(lab, client, settings):
    settings.DISCOVERY_CALLS_PER_S = 1000
    switch(lab.site, True, lab.image_profile())
    lab.run_jobs()
    agent = Agent(client, mac=UNKNOWN)
    assert agent.register().status_code == 200
    discovery.accept(agent.id, discovery.Placement("new-77", lab.rack, 30), Actor.system("test"))
    lab.run_jobs()
    assert UNKNOWN in local_files(lab) and boots(lab, UNKNOWN) == {BootKind.LOCAL}


def test_a_site_that_discovers_without_a_usable_memory_os_boots_disks(lab, fleet):
    switch(lab.site, True, lab.image_profile())
    Site.objects.filter(pk=lab.site.pk).update(memory_os=None)  # the profile was deleted (SET_NULL)
    discovery_boot.reconcile(lab.site.pk)
    assert boots(lab, UNKNOWN) == {BootKind.LOCAL}
    assert local_files(lab), "known machines keep their files: discovery is still on"


def test_saves_that_change_nothing_about_discovery_queue_nothing(lab, fleet):
    queue = discovery_boot.queues.site_queue(lab.site.slug)
    lab.run_jobs()
    lab.site.name = "Renamed"
    lab.site.save()
    NIC.objects.create(machine=fleet["machines"][0], mac="52:54:00:d1:5c:30")
    assert queue.count == 0, "a site that does not discover reconciles nothing"
    switch(lab.site, True, lab.image_profile())
    NIC.objects.create(machine=fleet["machines"][0], mac="52:54:00:d1:5c:31")
    NIC.objects.create(machine=fleet["machines"][0], mac="52:54:00:d1:5c:32")
    assert queue.count == 1, "a burst of changes queues one reconcile"


def test_the_periodic_reconcile_queues_one_job_per_site_on_its_queue(lab, settings):
    settings.PXE_RECONCILE_INTERVAL_S = 300
    assert discovery_boot.reconcile_all() == Site.objects.count()
    switch(lab.site, True, lab.image_profile())
    lab.run_jobs()
    assert boots(lab, UNKNOWN) == {BootKind.DISCOVER}


def test_ipxe_boots_an_unknown_mac_from_a_discovering_network_into_discovery(lab, fleet, client):
    known = fleet["machines"][0].pxe_nic.mac
    assert "No install armed" in client.get("/boot/ipxe", {"mac": UNKNOWN}).content.decode()
    switch(lab.site, True, lab.image_profile())
    script = client.get("/boot/ipxe", {"mac": UNKNOWN}).content.decode()
    assert "provisioner.mode=discover" in script and "kernel --name kernel tftp://${next-server}/memory-os/" in script
    assert "BOOTIF=01-${netX/mac:hexhyp}" in script
    assert "No install armed" in client.get("/boot/ipxe", {"mac": known}).content.decode()
    outside = client.get("/boot/ipxe", {"mac": UNKNOWN}, REMOTE_ADDR="192.0.2.1").content.decode()
    assert "No install armed" in outside


def test_load_demo_has_the_lab_site_discover_its_unknown_machines(lab, tmp_path):
    inventory = {
        "version": 1,
        "site": {
            "slug": lab.site.slug, "name": "Simulated datacentre", "tftp_root": str(lab.tftp_root),
            "base_url": "http://127.0.0.1:8000", "discovery": True, "provisioning_networks": "127.0.0.0/8",
            "bmc_username": "admin", "bmc_password": "lab-default-pw",
        },
        "image": {"url": "http://127.0.0.1:9/demo.img.gz", "sha256": "ab" * 32, "size_bytes": 1, "compression": "gz"},
        "racks": [{"name": "r1", "height_u": 42}],
        "pdus": [],
        "machines": [],
        "unknown_machines": [{"name": "lab-new-01", "rack": "r1", "position_u": 30, "macs": [UNKNOWN], "bmc": {}}],
    }  # fmt: skip
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory))
    call_command("load_demo", "--lab-inventory", str(path), stdout=io.StringIO())
    site = Site.objects.get(pk=lab.site.pk)
    assert site.discovery and site.memory_os.name == "lab-demo-image" and site.provisioning_networks == "127.0.0.0/8"
    assert site.bmc_username == "admin" and site.get_bmc_password() == "lab-default-pw"
    assert not NIC.objects.filter(mac=UNKNOWN).exists(), "an unknown machine stays out of inventory"
    lab.run_jobs()
    assert boots(lab, UNKNOWN) == {BootKind.DISCOVER}


def test_switching_it_on_in_the_admin_needs_networks_and_a_memory_os(lab):
    client = Client()
    client.force_login(make_user("root", superuser=True))
    url = f"/admin/inventory/site/{lab.site.pk}/change/"
    form = {
        "slug": lab.site.slug, "name": lab.site.name, "tftp_root": lab.site.tftp_root, "base_url": lab.site.base_url,
        "domain": "", "dns_servers": "", "bmc_username": "", "bmc_password": "", "discovery": "on",
        "provisioning_networks": "", "memory_os": "",
    }  # fmt: skip
    page = client.post(url, form).content.decode()
    assert "Discovery needs the provisioning networks" in page
    page = client.post(url, {**form, "provisioning_networks": "10.0.0.0/33"}).content.decode()
    assert "is not a network" in page
    lab.run_jobs()
    assert boots(lab, UNKNOWN) <= {BootKind.LOCAL}, "nothing was switched on"
    memory_os = lab.image_profile()
    response = client.post(url, {**form, "provisioning_networks": "127.0.0.0/8", "memory_os": memory_os.pk})
    assert response.status_code == 302, response.content.decode()[-2000:]
    lab.run_jobs()
    assert boots(lab, UNKNOWN) == {BootKind.DISCOVER}
