"""Power actions through the BMC glue: the real IPMI driver against a loopback BMC on UDP, the
Redis guard, the audit trail, the protected rule, reachability and the periodic power sync."""

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rq.registry import ScheduledJobRegistry

from audit.models import AuditEntry
from audit.service import Actor
from core import queues
from inventory import power, protection
from inventory.models import BMC
from provisioner.bmc import BmcAuthError, BootDevice
from provisioner.bmc.fake import fake_bmc, reset_fakes
from provisioner.lab.bmc import LoopbackBmc
from tests import redis_claim
from tests.conftest import make_bmc, make_machine

pytestmark = pytest.mark.django_db

PASSWORD = "lab-bmc-pw"


@pytest.fixture(autouse=True)
def _clean_redis(settings):
    settings.BMC_MIN_INTERVAL_S = 0.01
    settings.BMC_TIMEOUT_S = 1.0
    redis_claim.flush()
    reset_fakes()
    yield
    redis_claim.flush()


@pytest.fixture
def lab_bmc():
    bmc = LoopbackBmc("admin", PASSWORD).start()
    yield bmc
    bmc.stop()


def ipmi_machine(lab_bmc, **kw):
    machine = make_machine(**kw)
    make_bmc(machine, driver="ipmi", address="127.0.0.1", port=lab_bmc.port, username="admin", password=PASSWORD)
    machine.refresh_from_db()
    return machine


def test_power_actions_over_real_ipmi_change_the_bmc_and_are_audited(lab_bmc):
    machine = ipmi_machine(lab_bmc)
    actor = Actor.system("test")
    assert power.perform(machine, "status", actor) == f"{machine.hostname}: power is off"
    assert power.perform(machine, "pxe", actor).endswith("will boot from the network once, at its next start")
    booted = []
    lab_bmc.on_power_on.append(booted.append)
    assert power.perform(machine, "on", actor) == f"{machine.hostname}: powered on"
    assert lab_bmc.powered_on is True
    machine.refresh_from_db()
    assert machine.power_state == "on" and machine.power_state_at is not None
    assert power.perform(machine, "off", actor) == f"{machine.hostname}: powered off"
    assert lab_bmc.powered_on is False
    assert power.perform(machine, "ping", actor).startswith(f"{machine.hostname}: BMC answered in ")
    bmc = BMC.objects.get(machine=machine)
    assert bmc.reachable is True and bmc.latency_ms is not None and bmc.latency_ms < 1000
    assert list(
        AuditEntry.objects.filter(object_id=str(machine.pk)).order_by("id").values_list("action", flat=True)
    ) == [
        "machine.pxe",
        "machine.on",
        "machine.off",
        "machine.ping",
    ]
    assert booted[:1] == [BootDevice.PXE]  # the one-time network boot was what the machine started with


def test_wrong_password_fails_at_once_with_a_clear_audited_error(lab_bmc):
    machine = make_machine()
    make_bmc(machine, driver="ipmi", port=lab_bmc.port, username="admin", password="not-the-password")
    machine.refresh_from_db()
    with pytest.raises(BmcAuthError) as exc:
        power.perform(machine, "on", Actor.system("test"))
    assert f"127.0.0.1:{lab_bmc.port}" in str(exc.value) and "not-the-password" not in str(exc.value)
    entry = AuditEntry.objects.get(action="machine.on")
    assert entry.details["ok"] is False and entry.details["reason"] == "BmcAuthError"
    assert "not-the-password" not in str(entry.details)
    assert lab_bmc.powered_on is False


def test_protected_machine_refuses_destructive_actions_but_allows_status_and_on():
    machine = make_machine(protected=True)
    make_bmc(machine, driver="fake", address="127.0.9.1")
    machine.refresh_from_db()
    fake_bmc("127.0.9.1", 623).power = "on"
    for action in ("off", "cycle", "pxe"):
        label = protection.REFUSED_WHEN_PROTECTED[action]
        with pytest.raises(power.PowerActionRefused, match=f"Protected, {label} refused: {machine.hostname}\\."):
            power.perform(machine, action, Actor.system("test"))
    assert fake_bmc("127.0.9.1", 623).calls == []  # nothing reached the BMC
    assert power.perform(machine, "status", Actor.system("test")).endswith("power is on")
    refused = AuditEntry.objects.filter(action__in=["machine.off", "machine.cycle", "machine.pxe"])
    assert refused.count() == 3 and all(e.details == {"ok": False, "refused": "protected"} for e in refused)


def test_unreachable_bmc_is_marked_after_repeated_failures(settings):
    settings.BMC_UNREACHABLE_AFTER = 2
    machine = make_machine()
    make_bmc(machine, driver="fake", address="127.0.9.2")
    fake_bmc("127.0.9.2", 623).fault = "unreachable"
    power.refresh_power_state(machine.pk)
    bmc = BMC.objects.get(machine=machine)
    assert (bmc.reachable, bmc.consecutive_failures) == (None, 1)
    power.refresh_power_state(machine.pk)
    bmc.refresh_from_db()
    machine.refresh_from_db()
    assert (bmc.reachable, bmc.consecutive_failures, machine.power_state) == (False, 2, "unknown")
    assert "127.0.9.2:623" in bmc.last_error
    fake_bmc("127.0.9.2", 623).fault = None
    fake_bmc("127.0.9.2", 623).power = "on"
    power.refresh_power_state(machine.pk)
    bmc.refresh_from_db()
    machine.refresh_from_db()
    assert (bmc.reachable, bmc.consecutive_failures, bmc.last_error, machine.power_state) == (True, 0, "", "on")


def test_power_sync_spreads_one_sweep_per_site_over_the_interval_on_each_site_queue(settings):
    settings.POWER_SYNC_INTERVAL_S = 100
    machines = [make_machine() for _ in range(4)]
    for i, m in enumerate(machines):
        make_bmc(m, driver="fake", address=f"127.0.8.{i + 1}")
    make_bmc(make_machine(rack=machines[0].rack, position_u=5), driver="fake", address="127.0.8.9")
    assert power.power_sync() == 4  # four sites; the fifth machine shares the first one's
    conn = queues.connection()
    offsets = []
    now = timezone.now().timestamp()
    for m in machines:
        registry = ScheduledJobRegistry(queue=queues.site_queue(m.rack.site.slug))
        [job_id] = registry.get_job_ids()
        assert job_id == f"power-sweep-{m.rack.site.slug}"
        offsets.append(conn.zscore(registry.key, job_id) - now)
    offsets.sort()
    assert offsets[0] < 2 and 70 < offsets[-1] < 80  # 0, 25, 50, 75 s
    # It schedules only the reads: when it runs next is the scheduler's (installs/periodic.py).
    assert ScheduledJobRegistry(queue=queues.get_queue()).get_job_ids() == []


def test_bmc_command_prints_one_line_and_fails_clearly(capsys):
    machine = make_machine()
    make_bmc(machine, driver="fake", address="127.0.9.3")
    call_command("bmc", machine.hostname, "on")
    assert capsys.readouterr().out.strip() == f"{machine.hostname}: powered on"
    assert AuditEntry.objects.get(action="machine.on").actor_label.startswith("cli:")
    fake_bmc("127.0.9.3", 623).fault = "auth"
    with pytest.raises(CommandError, match=rf"^{machine.hostname}: BMC 127.0.9.3:623: .*"):
        call_command("bmc", machine.hostname, "status")
    with pytest.raises(CommandError, match="No machine named nope"):
        call_command("bmc", "nope", "status")
