"""Test BMC credentials in bulk without locking any account: exactly one authenticated attempt per BMC.

BMCs lock an account after a few failed logins (iDRAC and iLO count them per user, for minutes), so a test
that retries on a rejection, or on a lost answer to its login, can lock the very account it is testing. Here:

* IPMI: a fresh session (a live one proves nothing about today's password) whose password is checked at most
  once: pyghmi answers "incorrect password" without trying again, and a login whose RAKP answer is lost is
  reported unreachable instead of being started over (provisioner/bmc/ipmi_loop.py ``single_attempt``).
* Other drivers: one authenticated request (Redfish: one GET of the systems collection).
* No retry anywhere: the job is not retried by RQ, and a BMC another command holds is reported "skipped".

Each BMC is tried with the credentials it would use (its own, or its site's defaults: BMC.credentials), by
its site's worker, one job per site; the report is the CredentialCheck's rows.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from audit.service import Actor, record
from core import queues
from provisioner.bmc import BmcAuthError, BmcTarget
from provisioner.bmc import sweep as bmc_sweep
from provisioner.bmc.guard import BulkGuard

from . import bulk
from .models import BMC, CredentialCheck, CredentialCheckResult, CredentialResult, Machine

MAX_MACHINES = 5000


class CheckRefused(Exception):
    """Nothing was queued; the message says which machines and why."""


def start(machines: list[Machine], actor: Actor, *, enqueue: bool = True) -> CredentialCheck:
    """Record a credential test of ``machines`` and queue it on their sites' workers (one job per site), or
    with ``enqueue=False`` leave it for the caller to ``run`` (the CLI). All or nothing: machines without a
    BMC or outside any rack are refused before anything is written."""
    if not machines:
        raise CheckRefused("No machines were selected.")
    if len(machines) > MAX_MACHINES:
        raise CheckRefused(f"At most {MAX_MACHINES} machines at a time; {len(machines)} were selected.")
    with_bmc = set(BMC.objects.filter(machine__in=machines).values_list("machine_id", flat=True))
    problems = []
    no_bmc = [m.hostname for m in machines if m.pk not in with_bmc]
    if no_bmc:
        problems.append(f"No BMC configured: {', '.join(no_bmc[:20])}.")
    loose = [m.hostname for m in machines if m.rack_id is None]
    if loose:
        problems.append(f"Not in a rack, so no site worker can reach their BMCs: {', '.join(loose[:20])}.")
    if problems:
        raise CheckRefused(" ".join(problems))
    sites = {m.pk: m.rack.site.slug for m in machines}
    with transaction.atomic():
        check = CredentialCheck.objects.create(requested_by_label=actor.label)
        CredentialCheckResult.objects.bulk_create(CredentialCheckResult(run=check, machine=m) for m in machines)
        for machine in machines:
            record(actor, "machine.test_credentials", machine, {"check": check.pk})
        for slug in sorted(set(sites.values())) if enqueue else ():
            job_id = f"credential-check-{check.pk}-{slug}"
            queues.on_commit(
                job_id,
                lambda slug=slug, job_id=job_id: queues.site_queue(slug).enqueue(
                    run, check.pk, slug, job_id=job_id, result_ttl=86400, failure_ttl=86400
                ),
            )
    return check


def run(check_id: int, slug: str) -> str:
    """RQ job (site queue): test the credentials of this check's machines at site ``slug``, once each."""
    rows = list(
        CredentialCheckResult.objects.filter(run_id=check_id, machine__rack__site__slug=slug, result="")
        .select_related("machine__bmc", "machine__rack__site")
        .order_by("pk")
    )
    if not rows:
        return f"credential test {check_id} at {slug}: nothing left to test"
    site = rows[0].machine.rack.site  # one instance: its default password is decrypted once
    outcome: dict[int, tuple[str, str, str, str]] = {}  # row id -> (result, source, username, detail)
    tries: list[tuple[CredentialCheckResult, str, BmcTarget]] = []
    for row in rows:
        bmc = row.machine.bmc
        try:
            username, password, source = bmc.credentials(site)
        except Exception as exc:  # a lost encryption key: this BMC cannot be tried, the others can
            outcome[row.pk] = (CredentialResult.SKIPPED, "", bmc.username, str(exc)[:500])
            continue
        if not username or not password:
            missing = "user" if not username else "password"
            detail = f"no {missing} to try: set the BMC's own or its site's default"
            outcome[row.pk] = (CredentialResult.SKIPPED, source, username, detail)
            continue
        target = BmcTarget(bmc.address, bmc.port, username, password, timeout_s=settings.BMC_TIMEOUT_S)
        tries.append((row, source, target))
    guard = BulkGuard(
        queues.connection(),
        min_interval_s=settings.BMC_MIN_INTERVAL_S,
        lock_ttl_s=settings.BMC_TIMEOUT_S * (2 + len(tries) / 64) + 1.0,
    )
    held, _ = guard.acquire([target.endpoint for _, _, target in tries])
    free = [(row, source, target) for row, source, target in tries if target.endpoint in held]
    for row, source, target in tries:
        if target.endpoint not in held:
            detail = "another command to this BMC was running; not tried (test again)"
            outcome[row.pk] = (CredentialResult.SKIPPED, source, target.username, detail)
    try:
        readings = bmc_sweep.check_logins([(row.machine.bmc.driver, target) for row, _, target in free])
    finally:
        guard.release(held)
    for (row, source, target), reading in zip(free, readings, strict=True):
        if reading.ok:
            result, detail = CredentialResult.OK, f"logged in as {target.username!r} in {reading.value * 1000:.0f} ms"
        elif isinstance(reading.error, BmcAuthError):
            result, detail = CredentialResult.REJECTED, str(reading.error)
        else:
            result, detail = CredentialResult.UNREACHABLE, str(reading.error)
        outcome[row.pk] = (result, source, target.username, detail[:500])
    _store(check_id, rows, outcome)
    counts = {r: sum(1 for o in outcome.values() if o[0] == r) for r in CredentialResult.values}
    return f"credential test {check_id} at {slug}: " + ", ".join(f"{n} {r}" for r, n in counts.items() if n)


def _store(check_id: int, rows: list[CredentialCheckResult], outcome: dict) -> None:
    now = timezone.now()
    at = bulk.timestamp(now)
    with transaction.atomic():
        bulk.update_rows(
            CredentialCheckResult,
            [(pk, *values) for pk, values in outcome.items()],
            ("integer", "varchar(12)", "varchar(40)", "varchar(64)", "varchar(500)"),
            "result = v.column2, source = v.column3, username = v.column4, detail = v.column5, checked_at = %s",
            (at,),
        )
        by_row = {row.pk: row.machine.bmc.pk for row in rows}
        bulk.update_rows(
            BMC,
            [(by_row[pk], values[0]) for pk, values in outcome.items()],
            ("integer", "varchar(12)"),
            "credentials_result = v.column2, credentials_checked_at = %s",
            (at,),
        )
        pending = CredentialCheck.objects.filter(pk=check_id).annotate(
            left=Count("results", filter=Q(results__result=""))
        )
        if pending.filter(left=0).exists():
            CredentialCheck.objects.filter(pk=check_id, finished_at__isnull=True).update(finished_at=now)


def report(check: CredentialCheck) -> list[CredentialCheckResult]:
    return list(check.results.select_related("machine").order_by("machine__hostname"))
