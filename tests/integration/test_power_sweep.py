"""The per-site power sweep against real IPMI BMCs on loopback (the lab's fleet, served by one thread): every
machine's power lands in the inventory, dead BMCs cost one timeout together, not one each, and a BMC another
command holds is left alone."""

import time

import pytest

from core import queues
from inventory import power, power_sweep
from inventory.models import BMC, Machine
from provisioner.bmc import close_sessions
from provisioner.bmc.fake import fake_bmc, reset_fakes
from provisioner.bmc.guard import GuardedDriver
from provisioner.bmc.ipmi import IpmiDriver
from provisioner.lab.bmc import LoopbackFleet
from tests import redis_claim
from tests.conftest import make_bmc, make_machine, make_rack

pytestmark = pytest.mark.django_db

PASSWORD = "sweep-pw"


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.BMC_MIN_INTERVAL_S = 0.01
    settings.BMC_TIMEOUT_S = 1.0
    settings.BMC_UNREACHABLE_AFTER = 1
    redis_claim.flush()
    reset_fakes()
    yield
    close_sessions()
    redis_claim.flush()


@pytest.fixture
def fleet():
    fleet = LoopbackFleet(24, username="admin", password=PASSWORD).start()
    for i, bmc in enumerate(fleet.bmcs):
        bmc.powered_on = i % 3 != 0
    yield fleet
    fleet.stop()


def site_of(fleet, *, site_defaults: bool = True):
    """One rack of machines, one per lab BMC; every other one uses the site's default credentials."""
    rack = make_rack(height_u=60)
    site = rack.site
    site.bmc_username = "admin"
    site.set_bmc_password(PASSWORD)
    site.save()
    machines = []
    for i, bmc in enumerate(fleet.bmcs):
        machine = make_machine(rack=rack, position_u=i + 1)
        if site_defaults and i % 2:
            row = BMC(machine=machine, driver="ipmi", address="127.0.0.1", port=bmc.port, username="")
            row.save()
        else:
            make_bmc(machine, driver="ipmi", address="127.0.0.1", port=bmc.port, username="admin", password=PASSWORD)
        machines.append(machine)
    return site, machines


def test_a_site_sweep_reads_every_machine_power_in_one_job(fleet):
    site, machines = site_of(fleet)
    summary = power_sweep.sweep_site(site.slug)
    assert summary.startswith(f"{site.slug}: 24 read, 0 failed, 0 busy")
    states = dict(Machine.objects.filter(pk__in=[m.pk for m in machines]).values_list("pk", "power_state"))
    expected = {m.pk: "on" if bmc.powered_on else "off" for m, bmc in zip(machines, fleet.bmcs, strict=True)}
    assert states == expected and set(expected.values()) == {"on", "off"}
    assert set(BMC.objects.filter(machine__in=machines).values_list("reachable", "consecutive_failures")) == {(True, 0)}
    # Every BMC was asked once for its chassis status, logged in with its own or the site's credentials.
    assert [sum(1 for c in bmc.commands if c[:2] == (0, 1)) for bmc in fleet.bmcs] == [1] * 24

    fleet.bmcs[0].powered_on = True
    power_sweep.sweep_site(site.slug)
    machines[0].refresh_from_db()
    assert machines[0].power_state == "on"


def test_dead_bmcs_cost_one_timeout_together_and_are_counted(fleet):
    site, machines = site_of(fleet)
    dead = [0, 5, 9, 13, 20]
    for i in dead:
        fleet.bmcs[i].die()
    started = time.monotonic()
    summary = power_sweep.sweep_site(site.slug)
    elapsed = time.monotonic() - started
    # Five silent BMCs one after another would take five timeouts (5 s); together they take one.
    assert elapsed < 3.0, elapsed
    assert summary.startswith(f"{site.slug}: 19 read, 5 failed")
    for i, machine in enumerate(machines):
        machine.refresh_from_db()
        bmc = machine.bmc
        if i in dead:
            assert (bmc.reachable, bmc.consecutive_failures, machine.power_state) == (False, 1, "unknown")
            assert f"127.0.0.1:{fleet.bmcs[i].port}" in bmc.last_error and "within 1 s" in bmc.last_error
        else:
            assert (bmc.reachable, bmc.last_error) == (True, "")
            assert machine.power_state == ("on" if fleet.bmcs[i].powered_on else "off")


def test_a_bmc_held_by_another_command_is_left_for_the_next_sweep(fleet):
    site, machines = site_of(fleet)
    held = GuardedDriver(IpmiDriver(fleet.bmcs[3].target()), queues.connection(), min_interval_s=0.01, max_wait_s=0)
    token = held._acquire(60_000)
    try:
        summary = power_sweep.sweep_site(site.slug)
    finally:
        held._release(keys=[held._lock_key, held._cooldown_key], args=[token, 0])
    assert summary.startswith(f"{site.slug}: 23 read, 0 failed, 1 busy")
    machines[3].refresh_from_db()
    assert machines[3].power_state == "unknown" and machines[3].bmc.checked_at is None
    assert [c[:2] for c in fleet.bmcs[3].commands] == []
    # The sweep released every lock it took: a command right after it gets through.
    assert power.perform(machines[4], "status", power.Actor.system("test")).startswith(machines[4].hostname)


def test_drivers_without_a_bulk_read_are_swept_through_the_pool(settings):
    settings.BMC_UNREACHABLE_AFTER = 2
    rack = make_rack()
    machines = [make_machine(rack=rack, position_u=i + 1) for i in range(3)]
    for i, machine in enumerate(machines):
        make_bmc(machine, driver="fake", address=f"127.0.7.{i + 1}")
    fake_bmc("127.0.7.1", 623).power = "on"
    fake_bmc("127.0.7.3", 623).fault = "unreachable"
    assert power_sweep.sweep_site(rack.site.slug).startswith(f"{rack.site.slug}: 2 read, 1 failed")
    assert [Machine.objects.get(pk=m.pk).power_state for m in machines] == ["on", "off", "unknown"]
    dead = BMC.objects.get(machine=machines[2])
    assert (dead.reachable, dead.consecutive_failures) == (None, 1)  # one failure is not yet an outage
    power_sweep.sweep_site(rack.site.slug)
    dead.refresh_from_db()
    assert (dead.reachable, dead.consecutive_failures) == (False, 2)


def test_a_bmc_with_no_user_anywhere_is_never_tried_as_the_anonymous_user(fleet):
    rack = make_rack()  # a site without default credentials
    machine = make_machine(rack=rack, position_u=1)
    BMC.objects.create(machine=machine, driver="ipmi", address="127.0.0.1", port=fleet.bmcs[0].port, username="")
    assert power_sweep.sweep_site(rack.site.slug) == f"{rack.site.slug}: no BMC to read, 1 without a user"
    bmc = BMC.objects.get(machine=machine)
    assert bmc.consecutive_failures == 1 and power.NO_USER in bmc.last_error
    with pytest.raises(power.BmcAuthError, match="no user to log in as"):
        power.perform(machine, "status", power.Actor.system("test"))
    assert fleet.bmcs[0].login_attempts == 0


def test_the_sweep_raises_the_same_machine_alerts_as_single_reads_once_each(fleet):
    from installs.models import Alert

    site, machines = site_of(fleet)
    power_sweep.sweep_site(site.slug)
    assert not Alert.objects.exists()  # the first reading is no surprise

    fleet.bmcs[1].powered_on = not fleet.bmcs[1].powered_on  # changed at the BMC, not by us
    fleet.bmcs[4].die()
    queues.connection().set(power._OURS_KEY.format(machines[2].pk), "1", ex=60)  # our own action is running
    fleet.bmcs[2].powered_on = not fleet.bmcs[2].powered_on
    power_sweep.sweep_site(site.slug)
    power_sweep.sweep_site(site.slug)  # nothing new: no second alert of either kind

    alerts = sorted(Alert.objects.values_list("machine_id", "reason"))
    assert alerts == sorted([(machines[1].pk, "PowerChangedOutside"), (machines[4].pk, "BmcUnreachable")])
    changed = Alert.objects.get(reason="PowerChangedOutside")
    assert changed.message.startswith(f"{machines[1].hostname} is powered ")
    unreachable = Alert.objects.get(reason="BmcUnreachable")
    assert unreachable.message.startswith(f"The BMC of {machines[4].hostname} stopped answering")
    assert PASSWORD not in changed.message + unreachable.message


def test_a_bmc_that_rejects_the_password_is_said_to_answer_not_to_be_silent(fleet):
    from installs.models import Alert

    site, machines = site_of(fleet, site_defaults=False)
    machines[3].bmc.set_password("not-the-password")
    machines[3].bmc.save()
    power_sweep.sweep_site(site.slug)
    (alert,) = Alert.objects.filter(reason="BmcUnreachable")
    assert alert.message.startswith(f"The BMC of {machines[3].hostname} answers but rejects its credentials")
    assert "not-the-password" not in alert.message
