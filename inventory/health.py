"""Sensors and the system event log of machines: read by the site's worker into MachineHealth (the machine page,
the API and the CLI show what was read and when), refreshed periodically and on demand, and the event log
cleared as an audited action. A critical entry that was not in the log at the last read raises a machine alert.

The web process never talks to a BMC here: it enqueues :func:`refresh` or :func:`run_clear` on the machine's
site queue and shows the stored reading.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from audit.service import Actor, record
from core import queues
from provisioner.bmc import BmcError, Capability, registry
from provisioner.bmc.health import Health, LogEntry, SensorReading

from . import alerting
from .models import BMC, Machine, MachineHealth
from .power import PowerActionRefused, capabilities_of, driver_for, note_contact

log = logging.getLogger(__name__)

#: The newest entries kept of each machine's event log (a BMC's SEL holds up to a few thousand).
EVENTS_KEPT = 200
HEALTH_CAPABILITIES = (Capability.SENSORS, Capability.EVENT_LOG)


def _bmc_or_refuse(machine: Machine) -> BMC:
    try:
        return machine.bmc
    except BMC.DoesNotExist:
        raise PowerActionRefused(f"{machine.hostname} has no BMC configured.") from None


def can(machine: Machine, capability: Capability) -> bool:
    return capability in capabilities_of(machine)


def _key(entry: dict) -> tuple:
    """Identifies an entry across reads: record ids restart when a log is cleared, so the time and the words too."""
    return entry.get("id"), entry.get("at"), entry.get("message")


def read(machine: Machine) -> MachineHealth:
    """Read the machine's sensors and event log now (in the worker or the CLI) and store them. Each half that
    fails keeps its previous reading and records why; only what the driver declares is asked for."""
    bmc = _bmc_or_refuse(machine)
    health, _ = MachineHealth.objects.get_or_create(machine=machine)
    capabilities = registry.capabilities(bmc.driver)
    driver = driver_for(machine)
    now = timezone.now()
    updates: dict = {}
    contact_error = ""
    started = time.monotonic()
    if Capability.SENSORS in capabilities:
        try:
            readings = driver.sensors()
        except BmcError as exc:
            updates["sensors_error"] = str(exc)[:500]
            contact_error = str(exc)
        else:
            updates.update(sensors=[r.as_dict() for r in readings], sensors_read_at=now, sensors_error="")
    else:
        updates["sensors_error"] = registry.refusal(bmc.driver, Capability.SENSORS, machine.hostname)
    new_critical: list[dict] = []
    if Capability.EVENT_LOG in capabilities and not contact_error:
        try:
            entries = driver.events()
        except BmcError as exc:
            updates["events_error"] = str(exc)[:500]
            contact_error = str(exc)
        else:
            kept = [e.as_dict() for e in entries[-EVENTS_KEPT:]]
            seen = {_key(e) for e in health.events}
            new_critical = [e for e in kept if e["severity"] == Health.CRITICAL and _key(e) not in seen]
            updates.update(events=kept, events_total=len(entries), events_read_at=now, events_error="")
    elif Capability.EVENT_LOG not in capabilities:
        updates["events_error"] = registry.refusal(bmc.driver, Capability.EVENT_LOG, machine.hostname)
    MachineHealth.objects.filter(pk=health.pk).update(**updates)
    if contact_error:
        note_contact(bmc.pk, ok=False, error=contact_error)
    else:
        note_contact(bmc.pk, ok=True, latency_s=time.monotonic() - started)
    if new_critical:
        newest = new_critical[-1]
        more = f" (and {len(new_critical) - 1} more)" if len(new_critical) > 1 else ""
        alerting.alert(
            machine.pk,
            alerting.SEL_CRITICAL,
            f"{machine.hostname}'s event log: {newest['message']}"
            + (f" ({newest['sensor']})" if newest.get("sensor") else "")
            + more,
        )
    health.refresh_from_db()
    return health


def refresh(machine_id: int) -> str | None:
    """RQ job: read one machine's sensors and event log. A BMC that does not answer is a fact to show (and
    count towards its being unreachable), not a job to retry."""
    machine = Machine.objects.select_related("bmc").filter(pk=machine_id, bmc__isnull=False).first()
    if machine is None:
        return None
    try:
        health = read(machine)
    except PowerActionRefused as exc:
        return str(exc)
    except Exception as exc:  # a broken key or row must not stop the sweep of the others
        log.warning("health refresh of %s failed: %s", machine.hostname, exc)
        return f"{machine.hostname}: {exc}"
    return f"{machine.hostname}: {len(health.sensors)} sensors, {health.events_total} log entries"


def _site_queue(machine: Machine):
    if machine.rack_id is None:
        raise PowerActionRefused(f"{machine.hostname} is not in a rack, so no site worker can reach its BMC.")
    return queues.site_queue(machine.rack.site.slug)


def enqueue_refresh(machine: Machine) -> str:
    """Ask the machine's site worker to read its sensors and event log; returns the job id. Reading needs no
    audit entry: it changes nothing."""
    bmc = _bmc_or_refuse(machine)
    if not any(c in registry.capabilities(bmc.driver) for c in HEALTH_CAPABILITIES):
        registry.require(bmc.driver, Capability.SENSORS, machine.hostname)
    job_id = f"health-refresh-{machine.pk}"
    _site_queue(machine).enqueue(refresh, machine.pk, job_id=job_id, result_ttl=600, failure_ttl=3600)
    return job_id


def clear(machine: Machine, actor: Actor) -> str:
    """Clear the machine's event log now (the worker's job, or the CLI) and read it back; audited, whether it
    worked or not. Raises CapabilityMissing, PowerActionRefused or BmcError."""
    bmc = _bmc_or_refuse(machine)
    try:
        registry.require(bmc.driver, Capability.EVENT_LOG, machine.hostname)
        cleared = driver_for(machine).clear_events()
    except BmcError as exc:
        if exc.retryable:
            note_contact(bmc.pk, ok=False, error=str(exc))
        record(actor, "machine.sel_clear", machine, {"ok": False, "reason": exc.reason, "error": str(exc)})
        raise
    note_contact(bmc.pk, ok=True)
    record(actor, "machine.sel_clear", machine, {"ok": True, "entries": cleared})
    # What the log holds now (many BMCs log the clearing itself); the old entries are gone from the page too.
    MachineHealth.objects.update_or_create(machine=machine, defaults={"events": [], "events_total": 0})
    try:
        read(machine)
    except BmcError:
        pass  # cleared all the same; the next periodic read shows the log
    return f"{machine.hostname}: event log cleared ({cleared} entries)"


def enqueue_clear(machine: Machine, actor: Actor) -> str:
    """Queue the clearing on the machine's site worker; refused at once (and audited) when it cannot be done."""
    bmc = _bmc_or_refuse(machine)
    try:
        registry.require(bmc.driver, Capability.EVENT_LOG, machine.hostname)
        queue = _site_queue(machine)
    except (BmcError, PowerActionRefused) as exc:
        record(actor, "machine.sel_clear", machine, {"ok": False, "refused": str(exc)})
        raise
    job_id = f"machine-{machine.pk}-sel-clear-{time.time_ns()}"
    queue.enqueue(
        run_clear,
        machine.pk,
        actor.label,
        actor.user.pk if actor.user is not None else None,
        job_id=job_id,
        result_ttl=3600,
        failure_ttl=86400,
    )
    return job_id


def run_clear(machine_id: int, actor_label: str, user_id: int | None) -> str:
    """RQ job for enqueue_clear. Takes the actor by name and id (never a secret or a model)."""
    from django.contrib.auth import get_user_model  # the job runs in the worker: apps are loaded by then

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    actor = Actor.for_user(user) if user is not None else Actor.system(actor_label)
    machine = Machine.objects.select_related("bmc").get(pk=machine_id)
    try:
        return clear(machine, actor)
    except (PowerActionRefused, BmcError) as exc:
        return f"{machine.hostname}: {exc}"


def health_sync() -> int:
    """Periodic job (installs/periodic.py): enqueue a health read of every machine whose driver has sensors
    or an event log, on its site's queue, spread evenly over HEALTH_SYNC_INTERVAL_S like power_sync."""
    interval = settings.HEALTH_SYNC_INTERVAL_S
    drivers = [name for name, info in registry.drivers().items() if any(info.can(c) for c in HEALTH_CAPABILITIES)]
    machines = list(
        Machine.objects.filter(bmc__isnull=False, bmc__driver__in=drivers, rack__isnull=False)
        .order_by("pk")
        .values_list("pk", "rack__site__slug")
    )
    return queues.spread(
        [(slug, machine_id) for machine_id, slug in machines], interval, refresh, job_prefix="health-refresh-",
        result_ttl=0,
    )  # fmt: skip


# --- what pages, the API and the CLI show ------------------------------------------------------------------


def sensors_of(health: MachineHealth | None) -> list[SensorReading]:
    return [SensorReading.from_dict(d) for d in (health.sensors if health else [])]


def _g(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def sensor_rows(readings: list[SensorReading]) -> list[dict]:
    """What the machine page's table shows of each reading: numbers as the BMC gave them (no trailing zeros),
    thresholds as "critical / warning" pairs, lower and upper."""
    rows = []
    for r in readings:
        lower = " / ".join(_g(v) or "–" for v in (r.lower_critical, r.lower_non_critical))
        upper = " / ".join(_g(v) or "–" for v in (r.upper_non_critical, r.upper_critical))
        rows.append(
            {
                "sensor": r,
                "reading": f"{_g(r.value)} {r.unit}".strip() if r.value is not None else "",
                "lower": "" if lower == "– / –" else lower,
                "upper": "" if upper == "– / –" else upper,
            }
        )
    return rows


def events_of(health: MachineHealth | None, newest: int | None = None) -> list[LogEntry]:
    """The stored entries, newest first."""
    entries = [LogEntry.from_dict(d) for d in reversed(health.events if health else [])]
    return entries[:newest] if newest is not None else entries
