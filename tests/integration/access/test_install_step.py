"""The install's last step logs in through the site's real bastion sshd and checks the machine."""

import pytest

from access.service import login_public_key
from audit.service import Actor
from installs import steps
from installs.batches import request_installs
from installs.models import Event, StepKind
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
