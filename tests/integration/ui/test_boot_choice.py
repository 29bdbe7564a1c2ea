"""Choosing how an install boots, from the pages, the API and the command line: a profile on a stock workflow
boots from virtual media (or the network) when the request says so; a profile with a workflow of its own is
never rewritten, and a driver without virtual media is refused, both in words and with nothing queued."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts.api_tokens import create_token
from audit.models import AuditEntry
from audit.service import Actor
from installs import library
from installs.models import Install
from inventory.models import BMC, OSProfile
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db

CUSTOM = """\
name: netboot-only
method: preseed
stages:
  - name: all
    tasks: [check_bmc, write_boot_config, set_boot_pxe, power_cycle, wait_boot, wait_installer, remove_boot_config]
"""


def flow_of(machine) -> str:
    return Install.objects.filter(machine=machine, state="queued").get().plan.flow.name


def api(role: str = "technician") -> Client:
    _, key = create_token(user_with_role(role, f"{role}-boot"), "test", actor=Actor.system("test"))
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


def start(client, **body):
    return client.post("/api/v1/installs", json.dumps(body), content_type="application/json")


def test_the_page_asks_how_to_boot_and_the_request_boots_from_virtual_media(scene):
    client = Client()
    client.force_login(user_with_role("technician", "tech-boot"))
    page = client.get(reverse("inventory:machine-detail", args=[scene.idle.hostname])).content.decode()
    assert '<option value="virtual-media">boot from virtual media' in page
    url = reverse("inventory:machine-action")
    post = {"action": "install", "profile": scene.profile.name, "boot": "virtual-media", "machine": scene.idle.pk}
    confirm = client.post(url, post).content.decode()  # no JavaScript: the confirm page carries the choice on
    assert 'name="boot" value="virtual-media"' in confirm and "booting from virtual media" in confirm
    response = client.post(url, {**post, "confirmed": "1", "confirm": scene.idle.hostname})
    assert response.status_code == 302
    assert flow_of(scene.idle) == "stock-installer-virtual-media"
    entry = AuditEntry.objects.get(action="install.request", actor_label="tech-boot")
    assert entry.details["boot"] == "virtual-media" and entry.details["workflow"] == "stock-installer-virtual-media"


def test_a_boot_the_page_does_not_offer_is_refused_with_nothing_queued(scene):
    client = Client()
    client.force_login(user_with_role("technician", "tech-boot"))
    before = Install.objects.count()
    post = {"action": "install", "profile": scene.profile.name, "boot": "usb", "machine": scene.idle.pk,
            "confirmed": "1", "confirm": scene.idle.hostname}  # fmt: skip
    response = client.post(reverse("inventory:machine-action"), post, follow=True)
    assert "Boot: choose one of" in response.content.decode()
    assert Install.objects.count() == before


def test_the_api_chooses_the_boot_and_names_a_driver_that_cannot(scene):
    client = api()
    response = start(client, machines=[scene.idle.hostname], profile=scene.profile.name, boot="virtual-media")
    assert response.status_code == 201, response.content
    assert flow_of(scene.idle) == "stock-installer-virtual-media"
    Install.objects.filter(machine=scene.idle, state="queued").delete()
    BMC.objects.filter(machine=scene.idle).update(driver="ipmi")
    response = start(client, machines=[scene.idle.hostname], profile=scene.profile.name, boot="virtual-media")
    assert response.status_code == 409
    assert "cannot do virtual media" in response.json()["detail"]
    response = start(client, machines=[scene.idle.hostname], profile=scene.profile.name, boot="floppy")
    assert response.status_code == 400 and "boot" in json.dumps(response.json())
    assert not Install.objects.filter(machine=scene.idle, state="queued").exists()


def test_the_command_line_chooses_the_boot(scene):
    call_command("install", scene.idle.hostname, "--profile", scene.profile.name, "--boot", "virtual-media")
    assert flow_of(scene.idle) == "stock-installer-virtual-media"


def test_network_boot_undoes_a_profiles_stock_virtual_media_workflow(scene):
    profile = OSProfile.objects.get(name=scene.profile.name)
    profile.workflow = "stock-installer-virtual-media"
    profile.save()
    assert library.profile_flow(profile).name == "stock-installer-virtual-media"
    assert library.profile_flow(profile, "network").name == "stock-installer"
    call_command("install", scene.idle.hostname, "--profile", profile.name)
    assert flow_of(scene.idle) == "stock-installer-virtual-media"


def test_a_profiles_own_workflow_is_never_rewritten(scene):
    library.save_workflow(CUSTOM, Actor.system("admin"))
    profile = OSProfile.objects.get(name=scene.profile.name)
    profile.workflow = "netboot-only"
    profile.save()
    with pytest.raises(CommandError) as caught:
        call_command("install", scene.idle.hostname, "--profile", profile.name, "--boot", "virtual-media")
    message = str(caught.value)
    assert "runs the workflow netboot-only, which boots from the network" in message
    assert "cannot boot from virtual media" in message
    assert not Install.objects.filter(machine=scene.idle, state="queued").exists()
