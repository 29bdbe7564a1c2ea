"""Sensors and the event log of machines through the control plane: the site worker's read into MachineHealth,
the machine alerts (critical entries, a BMC that stops answering, power changed outside provisioner), the
audited clearing, and the page, the API and the CLI. IPMI against ipmi_sim; the rest on the fake driver."""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rq import SimpleWorker
from rq.registry import ScheduledJobRegistry

from accounts.api_tokens import create_token
from audit.models import AuditEntry
from audit.service import Actor
from core import queues
from installs.alerts import acknowledge
from installs.models import Alert
from inventory import alerting, health, power
from inventory.models import BMC, MachineHealth, MachineStatus
from provisioner.bmc import ipmi_health
from provisioner.bmc.fake import fake_bmc, reset_fakes
from provisioner.bmc.health import Health
from tests import redis_claim
from tests.conftest import make_bmc, make_machine
from tests.integration.bmc.conftest import IPMI_PASSWORD, IPMI_USER, IpmiSim, ipmitool
from tests.integration.bmc.test_ipmi_health import sensors_emu
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean(settings):
    settings.BMC_MIN_INTERVAL_S = 0.01
    settings.BMC_TIMEOUT_S = 1.0
    redis_claim.flush()
    reset_fakes()
    yield
    redis_claim.flush()
    reset_fakes()


def fake_machine(address: str, **kw):
    machine = make_machine(**kw)
    make_bmc(machine, driver="fake", address=address)
    machine.refresh_from_db()
    return machine


def open_alerts(machine, reason):
    return list(Alert.objects.filter(machine=machine, reason=reason, acknowledged_at__isnull=True))


def run_site_jobs(machine) -> None:
    """What the site's worker does: run every job queued for it (burst)."""
    queue = queues.site_queue(machine.rack.site.slug)
    SimpleWorker([queue], connection=queues.connection()).work(burst=True)


# --- reading -----------------------------------------------------------------------------------------------


def test_refresh_stores_sensors_and_the_event_log_with_when_they_were_read():
    machine = fake_machine("127.0.7.1")
    fake_bmc("127.0.7.1", 623).power = "on"
    before = timezone.now()
    assert health.refresh(machine.pk) == f"{machine.hostname}: 8 sensors, 4 log entries"
    row = MachineHealth.objects.get(machine=machine)
    assert row.sensors_read_at >= before and row.events_read_at >= before
    assert (row.sensors_error, row.events_error, row.events_total) == ("", "", 4)
    cpu = next(s for s in health.sensors_of(row) if s.name == "CPU1 Temp")
    assert (cpu.value, cpu.unit, cpu.upper_critical, cpu.health) == (48.0, "°C", 95, Health.OK)
    assert [e.id for e in health.events_of(row)] == ["4", "3", "2", "1"]  # newest first
    assert BMC.objects.get(machine=machine).reachable is True
    assert not Alert.objects.exists()  # nothing critical in the demo log


def test_a_failed_read_keeps_the_last_reading_and_says_why():
    machine = fake_machine("127.0.7.2")
    health.refresh(machine.pk)
    fake_bmc("127.0.7.2", 623).fault = "unreachable"
    health.refresh(machine.pk)
    row = MachineHealth.objects.get(machine=machine)
    assert "127.0.7.2:623" in row.sensors_error and len(row.sensors) == 8
    assert BMC.objects.get(machine=machine).consecutive_failures == 1


def test_a_driver_without_the_capability_is_refused_in_words(monkeypatch):
    from provisioner.bmc import registry

    machine = fake_machine("127.0.7.3")
    real = registry.capabilities
    monkeypatch.setattr(registry, "capabilities", lambda name: real(name) - {"sensors", "event_log"})
    with pytest.raises(power.BmcError, match="the Fake .* driver cannot do sensors"):
        health.enqueue_refresh(machine)
    with pytest.raises(power.BmcError, match="cannot do system event log"):
        health.enqueue_clear(machine, Actor.system("test"))
    assert AuditEntry.objects.get(action="machine.sel_clear").details["ok"] is False
    assert fake_bmc("127.0.7.3", 623).calls == []


def test_health_sync_spreads_reads_over_the_interval(settings):
    settings.HEALTH_SYNC_INTERVAL_S = 100
    machines = [fake_machine(f"127.0.6.{i + 1}") for i in range(4)]
    make_machine()  # no BMC: not read
    assert health.health_sync() == 4
    conn = queues.connection()
    now = timezone.now().timestamp()
    offsets = []
    for m in machines:
        registry = ScheduledJobRegistry(queue=queues.site_queue(m.rack.site.slug))
        assert registry.get_job_ids() == [f"health-refresh-{m.pk}"]
        offsets.append(conn.zscore(registry.key, f"health-refresh-{m.pk}") - now)
    offsets.sort()
    assert offsets[0] < 2 and 70 < offsets[-1] < 80


# --- alerts ------------------------------------------------------------------------------------------------


def test_a_critical_entry_alerts_once_and_a_new_one_after_acknowledging_alerts_again(
    settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.ALERT_EMAILS = ["ops@example.net"]
    machine = fake_machine("127.0.7.4")
    bmc = fake_bmc("127.0.7.4", 623)
    health.refresh(machine.pk)
    assert open_alerts(machine, alerting.SEL_CRITICAL) == []
    bmc.log_event("Upper critical going high", Health.CRITICAL, "CPU1 Temp")
    with django_capture_on_commit_callbacks(execute=True):
        health.refresh(machine.pk)
    [alert] = open_alerts(machine, alerting.SEL_CRITICAL)
    assert alert.install is None and "Upper critical going high (CPU1 Temp)" in alert.message
    with django_capture_on_commit_callbacks(execute=True):
        health.refresh(machine.pk)  # the same entry, read again: no second alert, no second mail
    assert Alert.objects.filter(machine=machine).count() == 1
    assert len(mailoutbox) == 1 and machine.hostname in mailoutbox[0].subject
    acknowledge(alert.pk, Actor.system("test"))
    health.refresh(machine.pk)  # still the old entry: nothing new
    assert Alert.objects.filter(machine=machine).count() == 1
    bmc.log_event("Fan1 lower critical going low", Health.CRITICAL, "Fan1 RPM")
    health.refresh(machine.pk)
    assert len(open_alerts(machine, alerting.SEL_CRITICAL)) == 1
    assert Alert.objects.filter(machine=machine).count() == 2


def test_a_critical_entry_logged_by_ipmi_sim_alerts_once(tmp_path):
    cpu = tmp_path / "cpu"
    cpu.write_text("48\n")
    sim = IpmiSim(tmp_path / "sim", emu=sensors_emu(cpu)).start()
    try:
        ipmi_health.forget_sdr()
        machine = make_machine()
        make_bmc(machine, driver="ipmi", address="127.0.0.1", port=sim.port, username=IPMI_USER,
                 password=IPMI_PASSWORD)  # fmt: skip
        health.refresh(machine.pk)
        assert not Alert.objects.exists()
        cpu.write_text("97\n")
        deadline = time.monotonic() + 5
        while "Upper Critical" not in ipmitool(sim.port, "sel", "list"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        health.refresh(machine.pk)
        health.refresh(machine.pk)
        [alert] = Alert.objects.filter(machine=machine)
        assert alert.reason == alerting.SEL_CRITICAL and "reading 97 °C" in alert.message
        row = MachineHealth.objects.get(machine=machine)
        assert next(s for s in health.sensors_of(row) if s.name == "CPU1 Temp").health == Health.CRITICAL
        # Cleared through the control plane, audited, and empty as ipmitool sees it.
        assert health.clear(machine, Actor.system("test")).endswith("event log cleared (2 entries)")
        assert ipmitool(sim.port, "sel", "list").strip() == ""
        assert AuditEntry.objects.get(action="machine.sel_clear").details == {"ok": True, "entries": 2}
        assert MachineHealth.objects.get(machine=machine).events == []
    finally:
        sim.kill()


def test_a_bmc_that_stops_answering_alerts_once(settings):
    settings.BMC_UNREACHABLE_AFTER = 2
    machine = fake_machine("127.0.7.5")
    power.refresh_power_state(machine.pk)
    fake_bmc("127.0.7.5", 623).fault = "unreachable"
    power.refresh_power_state(machine.pk)
    assert not Alert.objects.exists()  # one lost read is not an outage
    power.refresh_power_state(machine.pk)
    power.refresh_power_state(machine.pk)
    health.refresh(machine.pk)
    [alert] = Alert.objects.filter(machine=machine)
    assert alert.reason == alerting.BMC_UNREACHABLE and "127.0.7.5:623" in alert.message
    assert BMC.objects.get(machine=machine).reachable is False


def test_power_changed_outside_provisioner_alerts_but_our_own_changes_do_not():
    machine = fake_machine("127.0.7.6")
    bmc = fake_bmc("127.0.7.6", 623)
    power.refresh_power_state(machine.pk)  # off, first read: nothing to compare with
    power.perform(machine, "on", Actor.system("test"))  # ours
    power.refresh_power_state(machine.pk)
    assert not Alert.objects.exists()
    bmc.power = "off"  # someone pressed the button, or used the BMC's web page
    power.refresh_power_state(machine.pk)
    [alert] = Alert.objects.filter(machine=machine)
    assert alert.reason == alerting.POWER_CHANGED
    assert alert.message.startswith(f"{machine.hostname} is powered off, but provisioner had it on")
    machine.refresh_from_db()
    assert machine.power_state == "off"


def test_power_changes_during_an_install_or_right_after_our_action_do_not_alert():
    machine = fake_machine("127.0.7.7", status=MachineStatus.DEPLOYING)
    bmc = fake_bmc("127.0.7.7", 623)
    power.refresh_power_state(machine.pk)
    bmc.power = "on"  # the install's own steps, or the installer rebooting
    power.refresh_power_state(machine.pk)
    other = fake_machine("127.0.7.8")
    power.refresh_power_state(other.pk)  # off
    # Another worker's read that lands between our power-on command and perform() noting it: not a surprise.
    queues.connection().set(power._OURS_KEY.format(other.pk), "1", ex=60)  # what perform() sets first
    fake_bmc("127.0.7.8", 623).power = "on"
    power.refresh_power_state(other.pk)
    assert not Alert.objects.exists()


# --- page, API, CLI ----------------------------------------------------------------------------------------


def test_machine_page_shows_what_was_read_and_never_calls_the_bmc(client):
    machine = fake_machine("127.0.7.9")
    fake_bmc("127.0.7.9", 623).power = "on"
    client.force_login(user_with_role("technician"))
    html = client.get(f"/machines/{machine.hostname}/").content.decode()
    assert "Not read yet." in html and fake_bmc("127.0.7.9", 623).calls == []
    health.refresh(machine.pk)
    calls = len(fake_bmc("127.0.7.9", 623).calls)
    html = client.get(f"/machines/{machine.hostname}/").content.decode()
    assert len(fake_bmc("127.0.7.9", 623).calls) == calls  # the page reads the database only
    assert "CPU1 Temp" in html and "Upper non-critical going high" in html and "Clear event log" in html
    assert "85 / 95" in html  # CPU1 Temp: upper warning / upper critical
    # Refresh: queued for the site's worker, which reads.
    response = client.post(f"/machines/{machine.hostname}/health")
    assert response.status_code == 302 and len(fake_bmc("127.0.7.9", 623).calls) == calls
    run_site_jobs(machine)
    assert len(fake_bmc("127.0.7.9", 623).calls) > calls


def test_clearing_from_the_page_needs_the_hostname_typed_and_is_audited(client):
    machine = fake_machine("127.0.7.10")
    health.refresh(machine.pk)
    viewer = Client()
    viewer.force_login(user_with_role("viewer"))
    assert viewer.post(f"/machines/{machine.hostname}/sel-clear", {"confirm": machine.hostname}).status_code == 403
    technician = user_with_role("technician")
    client.force_login(technician)
    client.post(f"/machines/{machine.hostname}/sel-clear", {"confirm": "wrong"})
    run_site_jobs(machine)
    assert len(fake_bmc("127.0.7.10", 623).sel) == 4 and not AuditEntry.objects.filter(action="machine.sel_clear")
    client.post(f"/machines/{machine.hostname}/sel-clear", {"confirm": machine.hostname})
    run_site_jobs(machine)
    assert [e.message for e in fake_bmc("127.0.7.10", 623).sel] == ["Event log cleared"]
    entry = AuditEntry.objects.get(action="machine.sel_clear")
    assert entry.actor_user == technician and entry.details == {"ok": True, "entries": 4}
    assert MachineHealth.objects.get(machine=machine).events_total == 1


def test_api_reads_the_stored_health_and_queues_refresh_and_clear():
    machine = fake_machine("127.0.7.11")
    health.refresh(machine.pk)
    _, viewer_key = create_token(user_with_role("viewer", "v-api"), "t", actor=Actor.system("test"))
    _, tech_key = create_token(user_with_role("technician", "t-api"), "t", actor=Actor.system("test"))
    viewer, tech = Client(HTTP_AUTHORIZATION=f"Token {viewer_key}"), Client(HTTP_AUTHORIZATION=f"Token {tech_key}")
    sensors = viewer.get(f"/api/v1/machines/{machine.hostname}/sensors").json()
    assert sensors["read_at"] and sensors["error"] == ""
    assert {s["name"] for s in sensors["sensors"]} >= {"CPU1 Temp", "Fan1 RPM"}
    events = viewer.get(f"/api/v1/machines/{machine.hostname}/events").json()
    assert events["total"] == 4 and events["events"][0]["id"] == "4"
    assert viewer.post(f"/api/v1/machines/{machine.hostname}/events/clear").status_code == 403
    assert viewer.get("/api/v1/machines/nope/sensors").status_code == 404
    response = tech.post(f"/api/v1/machines/{machine.hostname}/events/clear")
    assert response.status_code == 202 and response.json()["job"].startswith(f"machine-{machine.pk}-sel-clear-")
    assert tech.post(f"/api/v1/machines/{machine.hostname}/health/refresh").json() == {
        "job": f"health-refresh-{machine.pk}"
    }
    run_site_jobs(machine)
    assert AuditEntry.objects.get(action="machine.sel_clear").actor_label == "t-api"
    assert viewer.get(f"/api/v1/machines/{machine.hostname}/events").json()["total"] == 1
    unracked = fake_machine("127.0.7.12", rack=None, position_u=None)
    response = tech.post(f"/api/v1/machines/{unracked.hostname}/events/clear")
    assert response.status_code == 409 and "not in a rack" in json.dumps(response.json())


def test_cli_reads_sensors_and_events_and_clears_the_log(capsys):
    machine = fake_machine("127.0.7.13")
    fake_bmc("127.0.7.13", 623).power = "on"
    call_command("bmc", machine.hostname, "sensors")
    out = capsys.readouterr().out
    assert "CPU1 Temp" in out and "48 °C" in out and "uc=95" in out
    call_command("bmc", machine.hostname, "events")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "CPU2 Temp: Upper non-critical going high" in lines[2]
    call_command("bmc", machine.hostname, "sel-clear")
    assert capsys.readouterr().out.strip() == f"{machine.hostname}: event log cleared (4 entries)"
    assert AuditEntry.objects.get(action="machine.sel_clear").actor_label.startswith("cli:")
    fake_bmc("127.0.7.13", 623).fault = "auth"
    with pytest.raises(CommandError, match="127.0.7.13:623"):
        call_command("bmc", machine.hostname, "sensors")
