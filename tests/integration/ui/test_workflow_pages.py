"""Where people look at workflows: the profile page shows the one its installs run, the library pages list
versions, the machine page previews it for that machine with disks chosen by the hints, and the install page
shows a parallel stage's tasks side by side."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from audit.service import Actor
from installs import library
from installs.batches import request_installs
from inventory.models import OSProfile
from tests.integration.ui.test_pages import client_for

RAID1 = """
name: mirrored
description: RAID 1 over the two SSDs
method: image
storage:
  layout: raid1
  disks: {rotational: false, count: 2}
stages:
  - name: prepare
    tasks: [check_bmc, write_boot_config]
  - name: boot
    tasks: [set_boot_pxe, power_cycle, wait_boot]
  - name: wipe
    run: parallel
    tasks:
      - {task: wipe_disks, params: {disks: [{name: sda}]}}
      - {task: wipe_disks, params: {disks: [{name: sdb}]}}
  - name: disks
    tasks: [raid, write_image, bootloader, configure_network, set_hostname, first_boot_callback]
  - name: finish
    tasks: [remove_boot_config, set_boot_disk, reboot]
  - name: verify
    tasks: [verify]
"""

FACTS = {
    "nics": [],
    "disks": [
        {"name": "sda", "path": "/dev/sda", "size_bytes": 480 * 10**9, "model": "SSD", "rotational": False},
        {"name": "sdb", "path": "/dev/sdb", "size_bytes": 480 * 10**9, "model": "SSD", "rotational": False},
        {"name": "sdc", "path": "/dev/sdc", "size_bytes": 8 * 10**12, "model": "HDD", "rotational": True},
    ],
}


def _image_profile(scene) -> OSProfile:
    library.save_workflow(RAID1, Actor.system("test"))
    stock = OSProfile.objects.get(name="memory-os-image")
    return OSProfile.objects.create(
        name="mirrored-image", method=stock.method, kernel=stock.kernel, initrd=stock.initrd,
        image_url="http://127.0.0.1:9/image.raw", image_sha256="0" * 64, workflow="mirrored",
    )  # fmt: skip


def test_profile_page_shows_its_workflow_and_the_library_lists_versions(scene):
    profile = _image_profile(scene)
    client = client_for("viewer")
    page = client.get(reverse("profile-detail", args=[profile.name])).content.decode()
    assert "Workflow: mirrored v1" in page and "parallel" in page and "raid1" in page
    library.save_workflow(RAID1.replace("RAID 1 over", "Mirror"), Actor.system("test"))
    listing = client.get(reverse("workflow-list")).content.decode()
    assert "mirrored" in listing and "v2" in listing and "mirrored-image" in listing
    detail = client.get(reverse("workflow-detail", args=["mirrored"]) + "?version=1").content.decode()
    assert "RAID 1 over the two SSDs" in detail and "v2" in detail
    stock = client.get(reverse("profile-detail", args=[scene.profile.name])).content.decode()
    assert "stock-installer" in stock and "wait_installer" in stock


def test_machine_preview_resolves_the_workflow_for_that_machine(scene):
    profile = _image_profile(scene)
    scene.idle.facts = FACTS
    scene.idle.save(update_fields=["facts"])
    client = client_for("technician")
    url = reverse("inventory:machine-preview", args=[scene.idle.hostname, profile.name, "workflow"])
    text = client.get(url).content.decode()
    assert "stage 3: wipe (parallel)" in text
    assert '"members": ["/dev/sda", "/dev/sdb"]' in text  # the SSDs, not the spinning disk
    assert '"disk": "/dev/md0"' in text
    # A machine whose disks do not fit the hint: said, with its disks listed.
    scene.idle.facts = {"nics": [], "disks": FACTS["disks"][2:]}
    scene.idle.save(update_fields=["facts"])
    text = client.get(url).content.decode()
    assert "CANNOT RESOLVE (DiskHintUnmatched)" in text and "/dev/sdc" in text


def test_install_page_shows_a_parallel_stage_side_by_side(scene):
    profile = _image_profile(scene)
    batch = request_installs([scene.idle.pk], profile, Actor.system("test"))
    install = batch.installs.get()
    page = client_for("viewer").get(reverse("install-detail", args=[install.pk])).content.decode()
    assert 'class="timeline side-by-side"' in page and "parallel · 2" in page
    assert page.count("Agent: wipe disks") == 2


def test_anonymous_is_sent_to_login_from_the_workflow_pages(scene):
    for url in (reverse("profile-list"), reverse("workflow-list")):
        assert Client().get(url).status_code == 302
