"""The install's last step logs in through the site's real bastion sshd and checks the machine."""

import pytest

from access.models import SiteCA
from access.service import login_public_key
from audit.service import Actor
from installs import steps
from installs.batches import request_installs
from installs.models import Event, StepKind
from installs.plan import build_plan
from inventory.models import OSProfile
from inventory.stock import sync_stock_profiles
from tests.conftest import make_bmc

from .conftest import add_target


def test_the_install_injects_the_site_key_and_its_ssh_step_checks_the_machine(site, lab):
    machine = add_target(site.test_rack, lab, pin=False, hostname="web01")  # not this host's name
    make_bmc(machine, driver="fake", address="127.0.7.1")
    sync_stock_profiles()
    batch = request_installs([machine.pk], OSProfile.objects.get(name="debian-12-preseed"), Actor.system("test"))
    install = batch.installs.get()
    assert login_public_key(site.pk).strip() in install.plan.profile.ssh_keys
    with pytest.raises(steps.StepFailed) as exc:
        steps.verify_ssh(install, install.steps.get(kind=StepKind.VERIFY_SSH))
    assert exc.value.reason == "VerifyCheckFailed"
    assert "hostname: expected web01" in exc.value.message
    messages = list(Event.objects.filter(install=install).values_list("message", flat=True))
    assert any(m.startswith("SSH check hostname: FAILED") for m in messages)
    assert any(m.startswith("SSH check nic: FAILED") for m in messages)  # its PXE MAC is not on this host


def test_without_a_jump_host_the_step_is_skipped_with_the_reason(db, lab):
    from tests.conftest import make_machine

    machine = make_machine()
    make_bmc(machine, driver="fake", address="127.0.7.2")
    sync_stock_profiles()
    batch = request_installs([machine.pk], OSProfile.objects.get(name="debian-12-preseed"), Actor.system("test"))
    install = batch.installs.get()
    result = steps.verify_ssh(install, install.steps.get(kind=StepKind.VERIFY_SSH))
    assert result["skipped"].startswith("SSH verification skipped: ")


def test_an_image_install_makes_the_machine_trust_the_site_ca(site, lab):
    machine = add_target(site.test_rack, lab, pin=False, hostname="img01")
    make_bmc(machine, driver="fake", address="127.0.7.3")
    profile = OSProfile.objects.create(
        name="ca-image", method="image", kernel="/k", initrd="/i", image_url="http://127.0.0.1:8000/x.img",
        image_sha256="a" * 64,
    )  # fmt: skip
    assert build_plan(machine, profile, for_install=False).site.ssh_ca_keys == ()  # a preview makes no CA
    assert not SiteCA.objects.filter(site=site).exists()
    install = request_installs([machine.pk], profile, Actor.system("test")).installs.get()
    step = install.steps.get(task="ssh_keys")
    assert step.params["ca_keys"] == SiteCA.for_site(site).trusted_keys() == list(install.plan.site.ssh_ca_keys)
    assert step.params["keys"] == [login_public_key(site.pk).strip()]
