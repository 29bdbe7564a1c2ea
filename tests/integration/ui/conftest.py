"""UI fixtures: one user per role (and the two flags that are not roles: is_staff alone, which grants
nothing, and superuser, which counts as admin), and a small inventory with an install, a batch and an alert."""

from __future__ import annotations

import dataclasses

import pytest
from django.contrib.auth.models import Group

from tests.conftest import make_bmc, make_machine, make_rack, make_site, make_user

ROLES = ("anonymous", "norole", "staff", "viewer", "technician", "admin", "superuser")


def user_with_role(role: str, username: str | None = None):
    user = make_user(username or f"{role}-user", superuser=role == "superuser")
    if role == "staff":
        user.is_staff = True
        user.save()
    if role in ("viewer", "technician", "admin"):
        # get_or_create: transactional tests flush the groups the roles migration made
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def users(db):
    return {role: user_with_role(role) for role in ROLES if role != "anonymous"}


@pytest.fixture
def scene(db):
    """Inventory with one install in flight, one failed install with an alert, and a batch."""
    from audit.service import Actor
    from installs.models import Alert, Batch, Event, EventKind, Install, InstallState, Step, StepKind
    from installs.plan import build_plan
    from inventory.models import OSProfile
    from inventory.stock import sync_stock_profiles

    sync_stock_profiles()
    site = make_site(slug="lab", name="Lab")
    rack = make_rack(site, name="r01", height_u=12)
    busy = make_machine(rack, hostname="busy-01", position_u=1, vendor="Dell", serial="SN-BUSY")
    idle = make_machine(rack, hostname="idle-01", position_u=3, vendor="HPE", serial="=cmd|' /C calc'!A0")
    make_bmc(busy, address="10.0.0.11")
    make_bmc(idle, address="10.0.0.12")
    profile = OSProfile.objects.get(name="debian-12-preseed")
    batch = Batch.objects.create(name="rollout", created_by_label="test")
    plan = build_plan(busy, profile)
    # A secret-looking value in the plan, which no page or API response may show.
    secret_profile = dataclasses.replace(plan.profile, root_password_hash="PLAN-MUST-NOT-SHOW")
    running = Install.objects.create(
        machine=busy,
        profile=profile,
        batch=batch,
        requested_by_label="test",
        state=InstallState.INSTALLING,
        progress=40,
        current_step="Installer running",
        plan=dataclasses.replace(plan, profile=secret_profile),
        token_nonce="NONCE-MUST-NOT-SHOW",
        boot_token_hash="HASH-MUST-NOT-SHOW" + "0" * 40,
        callback_token_hash="CBHASH-MUST-NOT-SHOW" + "0" * 38,
    )
    Step.objects.create(install=running, order=0, kind=StepKind.CHECK_BMC, state="succeeded")
    Step.objects.create(install=running, order=1, kind=StepKind.WAIT_INSTALLER, state="waiting")
    failed = Install.objects.create(
        machine=idle,
        profile=profile,
        requested_by_label="test",
        state=InstallState.FAILED,
        failure_reason="InstallerFailed",
        failure_message="The installer reported a failure: disk full.",
        plan=build_plan(idle, profile),
        token_nonce="n2",
        boot_token_hash="h" * 64,
    )
    for i in range(3):
        Event.objects.create(install=running, kind=EventKind.LOG, message=f"line {i}")
    alert = Alert.objects.create(install=failed, machine=idle, reason="InstallerFailed", message="disk full")
    from installs import library, workflow

    text = workflow.stock_text("preseed").replace("name: stock-installer", "name: scene-flow")
    library.save_workflow(text, Actor.system("test"))

    class Scene:
        pass

    from inventory.models import DiscoveredMachine

    # A machine that registered itself by discovery, waiting for a technician.
    discovered = DiscoveredMachine.objects.create(
        site=site, mac="52:54:00:d1:5c:99", key_hash="0" * 64, address="10.0.0.99", facts={"nics": []}
    )

    s = Scene()
    s.site, s.rack, s.busy, s.idle, s.profile = site, rack, busy, idle, profile
    s.discovered = discovered
    s.batch, s.running, s.failed, s.alert = batch, running, failed, alert
    s.actor = Actor.system("test")
    return s


@pytest.fixture
def memory_os(scene):
    """The scene's site boots a memory OS, as commissioning, tests and release need."""
    from inventory.models import OSProfile

    profile = OSProfile.objects.create(
        name="lab-memory-os",
        method="image",
        kernel="/memory-os/vmlinuz",
        initrd="/memory-os/initrd.img",
        image_url="http://127.0.0.1:8000/images/lab.img.gz",
        image_sha256="ab" * 32,
    )
    scene.site.memory_os = profile
    scene.site.save()
    return profile
