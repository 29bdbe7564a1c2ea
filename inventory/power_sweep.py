"""The periodic power sweep of one site: every machine's power read at once, the results written in bulk.

One RQ job per site (queued by power.power_sync on the site's queue) rather than one per machine: a worker
running a thousand small jobs spends its time on RQ and Django, not on the BMCs. The BMCs are read together
through provisioner/bmc/sweep.py (IPMI: the one IPMI loop, every request in flight at once, each with its
own deadline, so a dead BMC delays no other), under the same per-BMC Redis locks as every other command
(BulkGuard): a BMC another command holds right now is left for the next sweep. What comes back lands where
refresh_power_state puts it, through the bulk twins of note_contact and note_power.
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings

from core import queues
from provisioner.bmc import BmcTarget, Capability, PowerState, registry
from provisioner.bmc import sweep as bmc_sweep
from provisioner.bmc.guard import BulkGuard

from .models import Machine
from .power import NO_USER, Contact, note_contacts, note_powers, refresh_power_state

log = logging.getLogger(__name__)


def sweep_site(slug: str) -> str:
    """RQ job: read the power of every machine of site ``slug``: through its BMC, or through its PDU outlets
    where it has no BMC. Failures are counted on their BMCs, never raised: one dead BMC is a fact to show,
    not a reason to fail the sweep."""
    summary = _sweep_bmcs(slug)
    outlet_only = Machine.objects.filter(rack__site__slug=slug, bmc__isnull=True, pdu_outlets__isnull=False)
    # Machines without a BMC are few (PDU outlets only): read one after another, as refresh_power_state does.
    read = [refresh_power_state(pk) for pk in outlet_only.distinct().order_by("pk").values_list("pk", flat=True)]
    return summary + (f"; {len(read)} through PDU outlets" if read else "")


def _sweep_bmcs(slug: str) -> str:
    machines = list(
        Machine.objects.filter(rack__site__slug=slug, bmc__isnull=False)
        .select_related("bmc", "rack__site")
        .only(
            "pk",
            "hostname",
            "rack__site__slug",
            "rack__site__bmc_username",
            "rack__site__bmc_password_ciphertext",
            "bmc__id",
            "bmc__driver",
            "bmc__address",
            "bmc__port",
            "bmc__username",
            "bmc__password_ciphertext",
        )
        .order_by("pk")
    )
    sweep, problems, unusable = [], [], []
    seen: set[str] = set()
    site = machines[0].rack.site if machines else None  # one instance: its default password is decrypted once
    for machine in machines:
        bmc = machine.bmc
        if Capability.POWER not in registry.capabilities(bmc.driver):
            continue  # a driver that cannot read power (or is no longer installed): nothing to sweep
        try:
            username, password, _ = bmc.credentials(site)
            target = BmcTarget(bmc.address, bmc.port, username, password, timeout_s=settings.BMC_TIMEOUT_S)
        except Exception as exc:  # a lost key or a bad row must not stop the sweep of the others
            log.warning("power sweep of %s skipped: %s", machine.hostname, exc)
            problems.append(machine.hostname)
            continue
        if not username:
            unusable.append(Contact(bmc.pk, False, error=f"BMC {target.endpoint}: {NO_USER}"))
            continue
        if target.endpoint in seen:  # two machines naming one BMC: read it once
            continue
        seen.add(target.endpoint)
        sweep.append((machine, bmc, target))
    if not sweep:
        note_contacts(unusable)
        return f"{slug}: no BMC to read" + (f", {len(unusable)} without a user" if unusable else "")
    others = sum(1 for _, bmc, _ in sweep if bmc.driver != "ipmi")
    # The locks must outlive the sweep: IPMI BMCs are read together (one timeout), the rest a pool at a time.
    lock_ttl_s = settings.BMC_TIMEOUT_S * (2 + math.ceil(others / bmc_sweep.THREADS)) + 1.0
    guard = BulkGuard(queues.connection(), min_interval_s=settings.BMC_MIN_INTERVAL_S, lock_ttl_s=lock_ttl_s)
    held, cooldown_s = guard.acquire([target.endpoint for _, _, target in sweep])
    busy = len(sweep) - len(held)
    sweep = [entry for entry in sweep if entry[2].endpoint in held]
    try:
        if cooldown_s > 0:
            # Some BMC answered another command a moment ago; its pause is at most BMC_MIN_INTERVAL_S.
            time.sleep(min(cooldown_s, settings.BMC_MIN_INTERVAL_S))
        readings = bmc_sweep.read_power_states([(bmc.driver, target) for _, bmc, target in sweep])
    finally:
        guard.release(held)
    contacts, states = list(unusable), {}
    for (machine, bmc, _), reading in zip(sweep, readings, strict=True):
        contacts.append(Contact(bmc.pk, reading.ok, error="" if reading.ok else str(reading.error)))
        if reading.ok:
            states[machine.pk] = reading.value
    down = note_contacts(contacts)
    for machine, bmc, _ in sweep:
        if bmc.pk in down and machine.pk not in states:
            states[machine.pk] = PowerState.UNKNOWN  # an old reading would mislead
    note_powers(states)
    failed = sum(1 for c in contacts if not c.ok)
    return f"{slug}: {len(contacts) - failed} read, {failed} failed, {busy} busy (left for the next sweep)" + (
        f", {len(problems)} skipped: {', '.join(problems[:10])}" if problems else ""
    )
