"""Which disk layout an install's answer file gets from its plan (installs/render.py storage)."""

import dataclasses

from installs import render, workflow
from provisioner.pxe.stock import stock_profile
from tests.unit.installs.test_step_table import a_plan

TOKEN = "boot-0123456789abcdefABCDEF"
CALLBACK = "cb-0123456789abcdefABCDEF"


def test_one_target_disk_or_none_is_the_single_disk_default():
    assert render.storage(a_plan(target_disk="")) is None
    assert render.storage(a_plan(target_disk="/dev/nvme0n1")) is None
    storage = render.context(a_plan(target_disk="/dev/nvme0n1"), TOKEN, CALLBACK)["storage"]
    assert storage["kind"] == "single" and storage["devices"] == ["/dev/nvme0n1"]


def test_a_workflow_mirroring_two_disks_lays_out_raid1_in_the_preseed():
    text = workflow.stock_text("preseed").replace("name: stock-installer", "name: mirrored")
    text = text.replace("stages:", "storage:\n  layout: raid1\n  disks: {count: 2}\nstages:", 1)
    plan = dataclasses.replace(
        a_plan(template=stock_profile("debian-12-preseed")["template"]),
        workflow=workflow.check(text),
        storage_devices=("/dev/sda", "/dev/sdb"),  # what the hint chose from the machine's facts when planned
    )
    layout = render.storage(plan)
    assert (layout.kind, layout.devices) == ("raid1", ("/dev/sda", "/dev/sdb"))
    text = render.answer_file(plan, TOKEN, CALLBACK, "preseed.cfg")
    assert "d-i partman-auto/method string raid" in text
    assert "d-i grub-installer/bootdev string /dev/sda /dev/sdb" in text
