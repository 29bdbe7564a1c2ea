"""Site default BMC credentials, per-machine overrides, and the bulk credential test: against OpenIPMI's
ipmi_sim (a real BMC implementation) and the lab's BMC, which counts every password check it makes
(RAKP1 messages, what a BMC counts towards an account lockout)."""

import pytest
from django.core.management import call_command

from audit.models import AuditEntry
from audit.service import Actor
from inventory import credentials_check, power
from inventory.models import BMC, CredentialCheck, CredentialResult
from provisioner.bmc import BmcAuthError, close_sessions
from provisioner.bmc.pyghmi_patches import AsyncPrivilegeSession
from provisioner.lab.bmc import LoopbackBmc
from tests import redis_claim
from tests.conftest import make_bmc, make_machine, make_rack
from tests.integration.bmc.conftest import IPMI_PASSWORD, IPMI_USER, IpmiSim

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.BMC_MIN_INTERVAL_S = 0.01
    settings.BMC_TIMEOUT_S = 2.0
    redis_claim.flush()
    yield
    close_sessions()
    redis_claim.flush()


@pytest.fixture
def sim(tmp_path):
    sim = IpmiSim(tmp_path / "sim").start()
    yield sim
    sim.kill()


@pytest.fixture
def lab():
    bmc = LoopbackBmc(IPMI_USER, IPMI_PASSWORD).start()
    yield bmc
    bmc.stop()


def site_rack(username=IPMI_USER, password=IPMI_PASSWORD):
    rack = make_rack()
    rack.site.bmc_username = username
    rack.site.set_bmc_password(password)
    rack.site.save()
    return rack


def machine_with(rack, port, position, **own):
    machine = make_machine(rack=rack, position_u=position)
    if own:
        make_bmc(machine, driver="ipmi", address="127.0.0.1", port=port, **own)
    else:  # no user and no password of its own: the site's
        BMC.objects.create(machine=machine, driver="ipmi", address="127.0.0.1", port=port, username="")
    return machine


def run_check(machines, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        check = credentials_check.start(machines, Actor.system("test"))
    for slug in sorted({m.rack.site.slug for m in machines}):
        credentials_check.run(check.pk, slug)
    check.refresh_from_db()
    return check, {r.machine.hostname: r for r in credentials_check.report(check)}


def test_site_default_works_override_wins_and_a_wrong_password_is_rejected(sim, django_capture_on_commit_callbacks):
    rack = site_rack()
    by_site = machine_with(rack, sim.port, 1)
    own_good = machine_with(rack, sim.port, 2, username=IPMI_USER, password=IPMI_PASSWORD)
    own_bad = machine_with(rack, sim.port, 3, username=IPMI_USER, password="not-the-password")
    check, results = run_check([by_site, own_good, own_bad], django_capture_on_commit_callbacks)

    assert (results[by_site.hostname].result, results[by_site.hostname].source) == ("ok", "site")
    assert (results[own_good.hostname].result, results[own_good.hostname].source) == ("ok", "machine")
    # The machine's own password wins over the site's, although the site's would have worked.
    bad = results[own_bad.hostname]
    assert (bad.result, bad.source, bad.username) == ("rejected", "machine", IPMI_USER)
    assert "rejected" in bad.detail and "not-the-password" not in bad.detail
    assert check.finished_at is not None
    assert dict(BMC.objects.filter(machine__rack=rack).values_list("machine__hostname", "credentials_result")) == {
        by_site.hostname: "ok",
        own_good.hostname: "ok",
        own_bad.hostname: "rejected",
    }
    assert AuditEntry.objects.filter(action="machine.test_credentials").count() == 3
    # The site's defaults drive every other command as well.
    assert power.perform(by_site, "status", Actor.system("test")).endswith("power is off")


def test_a_wrong_password_costs_exactly_one_password_check(lab, django_capture_on_commit_callbacks):
    rack = site_rack(password="wrong-site-password")
    machine = machine_with(rack, lab.port, 1)
    _, results = run_check([machine], django_capture_on_commit_callbacks)
    assert results[machine.hostname].result == "rejected"
    assert lab.login_attempts == 1
    # Nor does a technician's ping retry a rejected login.
    with pytest.raises(BmcAuthError):
        power.perform(machine, "ping", Actor.system("test"))
    assert lab.login_attempts == 2


def test_a_login_whose_answer_is_lost_is_not_tried_again(lab, django_capture_on_commit_callbacks):
    rack = site_rack()
    machine = machine_with(rack, lab.port, 1)
    lab.lose_login_answers = 1  # the BMC checks the password, its answer never arrives
    _, results = run_check([machine], django_capture_on_commit_callbacks)
    assert results[machine.hostname].result == "unreachable"
    assert "not repeated" in results[machine.hostname].detail
    assert lab.login_attempts == 1
    # A live session proves nothing about today's password: a second test logs in again, and passes.
    _, results = run_check([machine], django_capture_on_commit_callbacks)
    assert results[machine.hostname].result == "ok" and lab.login_attempts == 2


def test_machines_without_bmc_or_rack_are_refused_and_missing_credentials_are_skipped(
    lab, django_capture_on_commit_callbacks
):
    rack = site_rack(username="", password="")
    no_creds = machine_with(rack, lab.port, 1)
    _, results = run_check([no_creds], django_capture_on_commit_callbacks)
    assert results[no_creds.hostname].result == "skipped" and "no user to try" in results[no_creds.hostname].detail
    assert lab.login_attempts == 0
    bare = make_machine(rack=rack, position_u=5)
    with pytest.raises(credentials_check.CheckRefused, match=f"No BMC configured: {bare.hostname}"):
        credentials_check.start([no_creds, bare], Actor.system("test"))
    assert CredentialCheck.objects.count() == 1


def test_the_command_tests_a_site_and_prints_the_report(sim, capsys, django_capture_on_commit_callbacks):
    rack = site_rack()
    good = machine_with(rack, sim.port, 1)
    bad = machine_with(rack, sim.port, 2, username=IPMI_USER, password="nope")
    with django_capture_on_commit_callbacks(execute=False):
        call_command("bmc_credentials", "test", "--site", rack.site.slug)
    out = capsys.readouterr().out
    assert f"{good.hostname}  ok" in out and f"{bad.hostname}  rejected" in out
    assert "1 ok, 1 rejected" in out
    assert CredentialResult.REJECTED in BMC.objects.values_list("credentials_result", flat=True)


def test_against_ipmi_sim_a_rejection_sends_one_rakp1(sim, monkeypatch, django_capture_on_commit_callbacks):
    """Counted on our side, at the one place pyghmi sends the message that makes a BMC check a password."""
    sent = []
    original = AsyncPrivilegeSession._send_rakp1

    def counting(session):
        sent.append(session.port)
        return original(session)

    monkeypatch.setattr(AsyncPrivilegeSession, "_send_rakp1", counting)
    rack = site_rack(password="wrong-site-password")
    machine = machine_with(rack, sim.port, 1)
    _, results = run_check([machine], django_capture_on_commit_callbacks)
    assert results[machine.hostname].result == "rejected"
    assert sent == [sim.port]
