"""A runaway profile template meets the render bounds wherever it runs: saving it in the admin is refused
with the line and the bound, a preview answers 409 saying so, and an installer fetching it fails its
install with that reason. Each within the time bound, none with a 500 page or a busy worker left behind."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from installs.models import InstallState
from inventory.models import OSProfile
from provisioner.pxe import sandbox
from tests.integration.installs.test_http import armed
from tests.integration.ui.conftest import user_with_role

RUNAWAY = (
    "d-i debian-installer/locale string en_US\n"
    "{% for i in range(10000) %}\n{% for j in range(10000) %}{% endfor %}\n{% endfor %}\n"
)
HUGE = "d-i debian-installer/locale string en_US\nd-i foo string {{ ('x' * 400000000)|length }}\n"
WITHIN = sandbox.RENDER_TIMEOUT_S + sandbox.RENDER_KILL_GRACE_S + 1.0


def form(profile: OSProfile, **changes) -> dict:
    fields = (
        "name", "description", "method", "kernel", "initrd", "kernel_args", "template", "image_url", "image_sha256",
        "target_disk", "root_password_hash", "ssh_authorized_keys",
    )  # fmt: skip
    data = {f: getattr(profile, f) for f in fields}
    if profile.legacy_anaconda:
        data["legacy_anaconda"] = "on"
    return {**data, **changes}


@pytest.mark.parametrize(
    ("source", "says"),
    [(RUNAWAY, "took longer than the bound of 2 s"), (HUGE, "repetition would build 400000000 items")],
    ids=["nested loops", "400 MB string"],
)
def test_the_admin_refuses_to_save_a_runaway_template(lab, admin_client, source, says):
    profile = lab.profile()
    url = f"/admin/inventory/osprofile/{profile.pk}/change/"
    started = time.monotonic()
    response = admin_client.post(url, form(profile, template=source))
    assert time.monotonic() - started < WITHIN
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["template"]
    assert any(says in e and "in profile debian-12-preseed at line" in e for e in errors), errors
    assert OSProfile.objects.get(pk=profile.pk).template == profile.template
    assert admin_client.post(url, form(profile)).status_code == 302  # the stock template itself saves


def test_a_preview_of_a_runaway_template_answers_409_with_the_bound(lab):
    machine = lab.machine()
    OSProfile.objects.filter(name="debian-12-preseed").update(template=RUNAWAY)  # saved before the bounds existed
    client = Client()
    client.force_login(user_with_role("technician"))
    started = time.monotonic()
    response = client.get(f"/machines/{machine.hostname}/preview/debian-12-preseed/preseed")
    assert time.monotonic() - started < WITHIN
    assert response.status_code == 409
    assert "line 3" in response.content.decode() and "took longer than the bound" in response.content.decode()


def test_an_installer_fetching_a_runaway_template_fails_its_install_with_the_bound(lab, client):
    profile = lab.profile()
    OSProfile.objects.filter(pk=profile.pk).update(template=HUGE)
    machine, install, token = armed(lab, OSProfile.objects.get(pk=profile.pk))
    started = time.monotonic()
    response = client.get(f"/i/{token}/preseed.cfg")
    assert time.monotonic() - started < WITHIN
    assert response.status_code == 500 and b"repetition would build" in response.content  # on the console
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "TemplateError")
    assert "line 2" in install.failure_message and "over the bound of 1048576" in install.failure_message
