"""Power and boot-device actions on machines through their BMCs, with the audit trail, the
protected-machine rule and the cached power state the dashboard shows."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.service import Actor, record
from core import metrics, queues
from core.redaction import redact_text
from provisioner.bmc import (
    BmcAuthError,
    BmcError,
    BmcTarget,
    BmcUnreachable,
    BootDevice,
    Capability,
    PowerState,
    get_driver,
    registry,
)
from provisioner.bmc.guard import GuardedDriver

from . import alerting, bulk, protection
from .models import BMC, BUSY_STATUSES, Machine
from .outlets import OutletPower, outlets_of

log = logging.getLogger(__name__)

ACTIONS = ("status", "on", "off", "cycle", "pxe", "disk", "ping", "media", "eject")
# A PDU outlet switches power and nothing else; it takes these over when the BMC does not answer.
OUTLET_CAPABILITIES = frozenset({Capability.POWER})
FALLBACK_ACTIONS = ("on", "off", "cycle")
#: What each action needs of the machine's driver; offered (UI) and accepted (API, CLI) only where declared.
ACTION_CAPABILITY = {
    "status": Capability.POWER,
    "on": Capability.POWER,
    "off": Capability.POWER,
    "cycle": Capability.POWER,
    "pxe": Capability.BOOT_DEVICE,
    "disk": Capability.BOOT_DEVICE,
    "ping": Capability.POWER,
    "media": Capability.VIRTUAL_MEDIA,  # what the virtual CD holds
    "eject": Capability.VIRTUAL_MEDIA,  # empty it (an install ejects its own; this is for media left behind)
}


def can(machine: Machine, action: str) -> bool:
    return ACTION_CAPABILITY[action] in capabilities_of(machine)


class PowerActionRefused(Exception):
    """The action is not allowed on this machine (protected, or neither a BMC nor a PDU outlet configured)."""


def target_for(bmc: BMC) -> BmcTarget:
    """The BMC's address with its credentials: its own, or its site's defaults where it has none."""
    machine = bmc.machine
    site = machine.rack.site if machine.rack_id is not None else None
    username, password, _ = bmc.credentials(site)
    target = BmcTarget(bmc.address, bmc.port, username, password, timeout_s=settings.BMC_TIMEOUT_S)
    if not username:  # never the anonymous user some BMCs accept
        raise BmcAuthError(target.endpoint, NO_USER)
    return target


NO_USER = "no user to log in as: set the BMC's own user or its site's default BMC user"


def capabilities_of(machine: Machine) -> frozenset[Capability]:
    """What the machine's out-of-band path can do (its BMC driver's declared capabilities); power alone for a
    machine that has only PDU outlets; nothing without either."""
    try:
        bmc = machine.bmc
    except BMC.DoesNotExist:
        return OUTLET_CAPABILITIES if machine.pdu_outlets.exists() else frozenset()
    return registry.capabilities(bmc.driver)


def refusal(machine: Machine, capability: Capability) -> str:
    """Why ``machine`` cannot do ``capability``, in a technician's words."""
    try:
        bmc = machine.bmc
    except BMC.DoesNotExist:
        if machine.pdu_outlets.exists():
            return (
                f"{machine.hostname} has no BMC, only PDU outlets, which can do {Capability.POWER.label} only, "
                f"not {capability.label}."
            )
        return f"{machine.hostname} has no BMC configured, so it cannot do {capability.label}."
    return registry.refusal(bmc.driver, capability, machine.hostname)


def driver_for(machine: Machine) -> GuardedDriver:
    try:
        bmc = machine.bmc
    except BMC.DoesNotExist:
        raise PowerActionRefused(f"{machine.hostname} has no BMC configured.") from None
    return GuardedDriver(
        get_driver(bmc.driver, target_for(bmc)),
        queues.connection(),
        min_interval_s=settings.BMC_MIN_INTERVAL_S,
        max_wait_s=settings.BMC_MAX_WAIT_S,
        observe=metrics.bmc_observer(bmc.driver),
    )


def note_contact(bmc_id: int, *, ok: bool, latency_s: float | None = None, error: str = "") -> None:
    """Record what the last contact with a BMC showed. Updates only these columns, so an admin
    editing the same BMC at the same moment loses nothing."""
    now = timezone.now()
    rows = BMC.objects.filter(pk=bmc_id)
    if ok:
        rows.update(
            reachable=True,
            latency_ms=None if latency_s is None else round(latency_s * 1000, 2),
            checked_at=now,
            consecutive_failures=0,
            last_error="",
        )
        return
    rows.update(consecutive_failures=F("consecutive_failures") + 1, checked_at=now, last_error=error[:500])
    # Only the read that flips it to unreachable alerts; the ones after it find it unreachable already.
    if (
        rows.filter(consecutive_failures__gte=settings.BMC_UNREACHABLE_AFTER)
        .exclude(reachable=False)
        .update(reachable=False)
    ):
        machine_id, hostname = BMC.objects.filter(pk=bmc_id).values_list("machine_id", "machine__hostname").first()
        alerting.alert(machine_id, alerting.BMC_UNREACHABLE, _unreachable_message(hostname, error))


def _unreachable_message(hostname: str, error: str) -> str:
    # Reads that fail on rejected credentials count too (the BMC is of no use to us), but say so: it answers.
    what = "answers but rejects its credentials" if "rejected" in error else "stopped answering"
    return f"The BMC of {hostname} {what} ({settings.BMC_UNREACHABLE_AFTER} reads in a row failed): {error[:300]}"


# Set while one of our power actions runs on a machine, so a power read that lands between the BMC's answer and
# our note of the new state is not taken for a change made outside provisioner. Removed once noted; expires by
# itself after a failed action, outliving the longest (a cycle's round trips, BMC_TIMEOUT_S each, and the guard).
_OURS_KEY = "provisioner:power-ours:{}"
_OURS_TTL_S = 60


def note_power(machine_id: int, state: PowerState | str, *, ours: bool = False) -> None:
    """Cache a machine's power state. A read (``ours`` False) that finds it on where we had it off, or off
    where we had it on, while no install holds the machine and no power action of ours is running on it,
    means someone changed it outside provisioner: a machine alert (inventory/alerting.py)."""
    state = str(state)
    now = timezone.now()
    rows = Machine.objects.filter(pk=machine_id)
    known = (PowerState.ON, PowerState.OFF)
    if ours or state not in known:
        rows.update(power_state=state, power_state_at=now)
        return
    # One query when nothing changed (the common case): the update matches only when this is no surprise.
    unsurprising = Q(power_state=state) | ~Q(power_state__in=known) | Q(status__in=BUSY_STATUSES)
    if rows.filter(unsurprising).update(power_state=state, power_state_at=now):
        return
    before = rows.values_list("power_state", "hostname").first()
    if before is None:
        return
    rows.update(power_state=state, power_state_at=now)
    if queues.connection().exists(_OURS_KEY.format(machine_id)):
        return
    alerting.alert(machine_id, alerting.POWER_CHANGED, _power_changed_message(before[1], state, before[0]))


def _power_changed_message(hostname: str, state, before: str) -> str:
    return (
        f"{hostname} is powered {state}, but provisioner had it {before} and neither an install nor a power "
        "action of ours changed it: someone or something else did (the BMC's own interface, a PDU, the OS)."
    )


# Bulk twins of note_contact and note_power, for a sweep of a whole site: the same columns and rules in a
# fixed number of queries. Whatever reacts to a contact or a power reading (alerts) hooks here as well.


@dataclass(frozen=True)
class Contact:
    bmc_id: int
    ok: bool
    latency_s: float | None = None
    error: str = ""


def note_contacts(contacts: list[Contact]) -> set[int]:
    """note_contact for many BMCs at once; returns the ids of those that are now unreachable."""
    now = bulk.timestamp(timezone.now())
    answered = [(c.bmc_id, None if c.latency_s is None else round(c.latency_s * 1000, 2)) for c in contacts if c.ok]
    bulk.update_rows(
        BMC,
        answered,
        ("integer", "double precision"),
        "reachable = TRUE, latency_ms = v.column2, checked_at = %s, consecutive_failures = 0, last_error = ''",
        (now,),
    )
    failed = [(c.bmc_id, c.error[:500]) for c in contacts if not c.ok]
    if not failed:
        return set()
    bulk.update_rows(
        BMC,
        failed,
        ("integer", "varchar(500)"),
        "consecutive_failures = consecutive_failures + 1, checked_at = %s, last_error = v.column2",
        (now,),
    )
    rows = BMC.objects.filter(pk__in=[pk for pk, _ in failed])
    down = set(rows.filter(consecutive_failures__gte=settings.BMC_UNREACHABLE_AFTER).values_list("pk", flat=True))
    # As in note_contact: only the reading that flips a BMC to unreachable alerts.
    flipped = list(
        BMC.objects.filter(pk__in=down).exclude(reachable=False).values_list("pk", "machine_id", "machine__hostname")
    )
    BMC.objects.filter(pk__in=down).update(reachable=False)
    errors = dict(failed)
    for bmc_id, machine_id, hostname in flipped:
        alerting.alert(machine_id, alerting.BMC_UNREACHABLE, _unreachable_message(hostname, errors[bmc_id]))
    return down


def note_powers(states: dict[int, PowerState | str]) -> None:
    """note_power for many machines at once ({machine id: state}): one query per distinct state."""
    now = timezone.now()
    known = (PowerState.ON, PowerState.OFF)
    # What note_power calls a surprise: a known state turned into the other known one, no install holding the
    # machine. One query finds them all (none, usually); the alert waits for the update below.
    candidates = [pk for pk, state in states.items() if str(state) in known]
    surprises = [
        (pk, hostname, before)
        for pk, hostname, before in Machine.objects.filter(pk__in=candidates, power_state__in=known)
        .exclude(status__in=BUSY_STATUSES)
        .values_list("pk", "hostname", "power_state")
        if before != str(states[pk])
    ]
    by_state: dict[str, list[int]] = {}
    for machine_id, state in states.items():
        by_state.setdefault(str(state), []).append(machine_id)
    for state, ids in by_state.items():
        Machine.objects.filter(pk__in=ids).update(power_state=state, power_state_at=now)
    if not surprises:
        return
    redis = queues.connection()
    ours = redis.mget([_OURS_KEY.format(pk) for pk, _, _ in surprises])
    for (machine_id, hostname, before), mark in zip(surprises, ours, strict=True):
        if mark is None:
            alerting.alert(
                machine_id, alerting.POWER_CHANGED, _power_changed_message(hostname, states[machine_id], before)
            )


def perform(machine: Machine, action: str, actor: Actor) -> str:
    """Run one action now and return a line for the technician. Raises PowerActionRefused or BmcError
    (whose message names the BMC, never the password); every attempt is audited."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if protection.refused([machine], action):
        record(actor, f"machine.{action}", machine, {"ok": False, "refused": "protected"})
        raise PowerActionRefused(protection.refusal_message([machine], action))
    if not can(machine, action):
        record(actor, f"machine.{action}", machine, {"ok": False, "refused": "capability"})
        raise PowerActionRefused(refusal(machine, ACTION_CAPABILITY[action]))
    if getattr(machine, "bmc", None) is None:  # the reverse one-to-one raises an AttributeError when absent
        outlets = _outlets(machine)
        if outlets is None:
            raise PowerActionRefused(f"{machine.hostname} has no BMC and no PDU outlet configured.") from None
        return _perform_on_outlets(machine, action, actor, outlets)
    driver = driver_for(machine)
    started = time.monotonic()
    changes_power = action in ("on", "off", "cycle")
    if changes_power:
        queues.connection().set(_OURS_KEY.format(machine.pk), "1", ex=_OURS_TTL_S)
    try:
        uefi = machine.uefi if Capability.BOOT_MODE in capabilities_of(machine) else None
        result = _run(driver, action, uefi)
    except BmcError as exc:
        note_contact(machine.bmc.pk, ok=False, error=str(exc))
        # A BMC that hangs does not stop a technician from switching the machine: its outlets can.
        if action in FALLBACK_ACTIONS and isinstance(exc, BmcUnreachable):
            outlets = _outlets(machine)
            if outlets is not None:
                return _perform_on_outlets(machine, action, actor, outlets, bmc_error=exc)
        if action not in ("status", "media"):
            record(actor, f"machine.{action}", machine, {"ok": False, "reason": exc.reason, "error": str(exc)})
        raise
    note_contact(machine.bmc.pk, ok=True, latency_s=result if action == "ping" else time.monotonic() - started)
    if isinstance(result, PowerState):
        note_power(machine.pk, result)
    elif changes_power:
        note_power(machine.pk, PowerState.OFF if action == "off" else PowerState.ON, ours=True)
        queues.connection().delete(_OURS_KEY.format(machine.pk))
    if action not in ("status", "media"):
        record(actor, f"machine.{action}", machine, {"ok": True})
    return _describe(machine, action, result)


def _outlets(machine: Machine) -> OutletPower | None:
    try:
        return outlets_of(machine)
    except ValueError as exc:  # a PDU row without the credentials its SNMP version needs
        raise PowerActionRefused(f"{machine.hostname}: {exc}") from None


def _perform_on_outlets(
    machine: Machine, action: str, actor: Actor, outlets: OutletPower, *, bmc_error: BmcError | None = None
) -> str:
    """``action`` through the machine's PDU outlets: it has no BMC, or (``bmc_error``) its BMC did not answer."""
    via = {"via": "pdu", "outlets": outlets.label}
    if bmc_error is not None:
        via |= {"fallback": True, "bmc_reason": bmc_error.reason, "bmc_error": str(bmc_error)}
    changes_power = action in ("on", "off", "cycle")
    if changes_power:
        queues.connection().set(_OURS_KEY.format(machine.pk), "1", ex=_OURS_TTL_S)
    try:
        result = _run(outlets, action)
    except BmcError as exc:
        if action != "status" or bmc_error is not None:
            record(actor, f"machine.{action}", machine, {"ok": False, "reason": exc.reason, "error": str(exc), **via})
        if bmc_error is not None:
            raise type(exc)(exc.endpoint, f"{exc.detail} (tried after the BMC failed: {bmc_error})") from None
        raise
    if isinstance(result, PowerState):
        note_power(machine.pk, result)
    elif changes_power:
        note_power(machine.pk, PowerState.OFF if action == "off" else PowerState.ON, ours=True)
        queues.connection().delete(_OURS_KEY.format(machine.pk))
    if action != "status":
        record(actor, f"machine.{action}", machine, {"ok": True, **via})
    line = _describe(machine, action, result)
    if action == "ping":
        line = f"{machine.hostname}: {outlets.label} answered in {result * 1000:.1f} ms"
    if bmc_error is not None:
        return f"{line} through {outlets.label}, because the BMC did not answer ({bmc_error})"
    return f"{line} (through {outlets.label})"


def _run(driver, action: str, uefi: bool | None = None):
    if action == "status":
        return driver.power_state()
    if action == "on":
        return driver.power_on()
    if action == "off":
        return driver.power_off()
    if action == "cycle":
        return driver.power_cycle()
    if action == "pxe":
        return driver.set_boot_device(BootDevice.PXE, once=True, uefi=uefi)
    if action == "disk":
        return driver.set_boot_device(BootDevice.DISK, once=False, uefi=uefi)
    if action == "media":
        return driver.media()
    if action == "eject":
        return driver.eject_media()
    return driver.ping()


def _describe(machine: Machine, action: str, result) -> str:
    return {
        "status": lambda: f"{machine.hostname}: power is {result}",
        "on": lambda: f"{machine.hostname}: powered on",
        "off": lambda: f"{machine.hostname}: powered off",
        "cycle": lambda: f"{machine.hostname}: power cycled",
        "pxe": lambda: f"{machine.hostname}: will boot from the network once, at its next start",
        "disk": lambda: f"{machine.hostname}: boots from disk",
        "ping": lambda: f"{machine.hostname}: BMC answered in {result * 1000:.1f} ms",
        # An install's ISO name opens the ISO, which holds its boot credential: masked as in the logs.
        "media": lambda: (
            f"{machine.hostname}: virtual CD ({result.device}) holds {redact_text(result.image) or result.image_name}"
            if result.inserted
            else f"{machine.hostname}: virtual CD ({result.device}) is empty"
        ),
        "eject": lambda: f"{machine.hostname}: " + ("virtual media ejected" if result else "no virtual media to eject"),
    }[action]()


# --- periodic power sync -------------------------------------------------------------------


def refresh_power_state(machine_id: int) -> str | None:
    """RQ job: read one machine's power state into the cache. Failures are counted, not raised:
    a BMC that is down is a fact to show, not a job to retry."""
    machine = Machine.objects.select_related("bmc").filter(pk=machine_id).first()
    if machine is None:
        return None
    if getattr(machine, "bmc", None) is None:
        return _refresh_from_outlets(machine)
    try:
        state = driver_for(machine).power_state()
    except BmcError as exc:
        note_contact(machine.bmc.pk, ok=False, error=str(exc))
        if BMC.objects.filter(pk=machine.bmc.pk, reachable=False).exists():
            note_power(machine.pk, PowerState.UNKNOWN)  # an old reading would mislead
        return f"{machine.hostname}: {exc}"
    except Exception as exc:  # a broken key or row must not stop the sweep of the others
        log.warning("power refresh of %s failed: %s", machine.hostname, exc)
        return f"{machine.hostname}: {exc}"
    note_contact(machine.bmc.pk, ok=True)
    note_power(machine.pk, state)
    return f"{machine.hostname}: {state}"


def _refresh_from_outlets(machine: Machine) -> str | None:
    outlets = outlets_of(machine)
    if outlets is None:
        return None
    try:
        state = outlets.power_state()
    except BmcError as exc:
        note_power(machine.pk, PowerState.UNKNOWN)  # no BMC to count failures on; an old reading would mislead
        return f"{machine.hostname}: {exc}"
    except Exception as exc:  # a broken key or row must not stop the sweep of the others
        log.warning("power refresh of %s failed: %s", machine.hostname, exc)
        return f"{machine.hostname}: {exc}"
    note_power(machine.pk, state)
    return f"{machine.hostname}: {state} ({outlets.label})"


def power_sync() -> int:
    """Periodic job (installs/periodic.py): one sweep job per site on the site's queue, which reads every
    machine's power there at once (inventory/power_sweep.py), the sites spread evenly over
    POWER_SYNC_INTERVAL_S. Returns the number of sites."""
    interval = settings.POWER_SYNC_INTERVAL_S
    slugs = list(
        Machine.objects.filter(Q(bmc__isnull=False) | Q(pdu_outlets__isnull=False), rack__isnull=False)
        .order_by("rack__site__slug")
        .values_list("rack__site__slug", flat=True)
        .distinct()
    )
    # By name: power_sweep imports this module.
    return queues.spread(
        [(slug, slug) for slug in slugs], interval, "inventory.power_sweep.sweep_site", job_prefix="power-sweep-",
        result_ttl=3600,
    )  # fmt: skip


# --- actions requested from the UI or API: audited now, run by the site's worker ------------


def enqueue_actions(machines, action: str, actor: Actor) -> list[str]:
    """Queue ``action`` on each machine's site queue; returns the job ids. Protected machines are
    refused here already, so the caller can tell the technician at once: all or none are queued, and
    each refused machine is audited as perform() audits it, whoever asked."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    protected = protection.refused(machines, action)
    incapable = [machine for machine in machines if not can(machine, action)]
    refused = {
        machine: "protected" if machine in protected else "capability" if machine in incapable else "not_in_rack"
        for machine in machines
        if machine in protected or machine in incapable or machine.rack_id is None
    }
    if refused:
        with transaction.atomic():
            for machine, why in refused.items():
                record(actor, f"machine.{action}", machine, {"ok": False, "refused": why})
        if protected:
            raise PowerActionRefused(protection.refusal_message(protected, action))
        if incapable:
            raise PowerActionRefused(" ".join(refusal(m, ACTION_CAPABILITY[action]) for m in incapable))
        raise PowerActionRefused(
            f"Not in a rack, so no site worker can reach their BMCs: {', '.join(m.hostname for m in refused)}."
        )
    job_ids = []
    for machine in machines:
        job_id = f"machine-{machine.pk}-{action}-{time.time_ns()}"
        queues.site_queue(machine.rack.site.slug).enqueue(
            run_action,
            machine.pk,
            action,
            actor.label,
            actor.user.pk if actor.user is not None else None,
            job_id=job_id,
            result_ttl=3600,
            failure_ttl=86400,
        )
        job_ids.append(job_id)
    return job_ids


def run_action(machine_id: int, action: str, actor_label: str, user_id: int | None) -> str:
    """RQ job for enqueue_actions. Takes the actor by name and id (never a secret or a model)."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    actor = Actor.for_user(user) if user is not None else Actor.system(actor_label)
    machine = Machine.objects.select_related("bmc").get(pk=machine_id)
    try:
        return perform(machine, action, actor)
    except (PowerActionRefused, BmcError) as exc:
        return f"{machine.hostname}: {exc}"
