"""Host ping: an ICMP echo from the site's worker to each machine's own address (its primary NIC's), shown
beside BMC reachability. A BMC that answers while its host does not is a machine that is down, hung or not
on its network; both silent is usually the rack's switch or power.

Periodic (host_ping_sync, one job per site on the site's queue, all of a site's hosts pinged at once) and on
demand (enqueue_host_pings, audited). The pinging itself is provisioner/bmc/hostping.py.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone

from audit.service import Actor, record
from core import queues
from provisioner.bmc import hostping

from . import bulk
from .models import NIC, Machine, primary_address

NO_ADDRESS = "no address: give the machine's primary NIC an IP address"


class HostPingRefused(Exception):
    """The ping cannot be queued (machines not in a rack: no site worker to send it)."""


def _machines(rows):
    return rows.prefetch_related(Prefetch("nics", queryset=NIC.objects.only("machine_id", "ip", "is_pxe", "mac")))


def ping_machines(machine_ids: list[int]) -> str:
    """RQ job (site queue): ping these machines' hosts now and store what came back."""
    machines = list(_machines(Machine.objects.filter(pk__in=machine_ids).only("pk", "hostname")))
    return _ping_and_note(machines)


def ping_site(slug: str) -> str:
    """RQ job (site queue): ping every host of site ``slug`` at once."""
    machines = list(_machines(Machine.objects.filter(rack__site__slug=slug).only("pk", "hostname")))
    return f"{slug}: {_ping_and_note(machines)}"


def _ping_and_note(machines: list[Machine]) -> str:
    addresses = {m.pk: primary_address(m.nics.all()) for m in machines}
    wanted = sorted({a for a in addresses.values() if a})
    try:
        results = hostping.ping_many(wanted, timeout_s=settings.HOST_PING_TIMEOUT_S, method=settings.HOST_PING_METHOD)
    except hostping.PingUnavailable as exc:
        note_host_pings({m.pk: hostping.PingResult("", False, error=f"cannot ping: {exc}") for m in machines})
        return f"cannot ping: {exc}"
    outcome = {pk: results[a] if a else None for pk, a in addresses.items()}
    note_host_pings(outcome)
    up = sum(1 for r in outcome.values() if r is not None and r.reachable)
    return f"{up} of {len(machines)} hosts answered"


def note_host_pings(results: dict[int, hostping.PingResult | None]) -> None:
    """Store each machine's ping result ({machine id: result}; None: the machine has no address) in a fixed
    number of queries."""
    now = bulk.timestamp(timezone.now())
    answered = [
        (pk, None if r.latency_s is None else round(r.latency_s * 1000, 3))
        for pk, r in results.items()
        if r is not None and r.reachable
    ]
    bulk.update_rows(
        Machine,
        answered,
        ("integer", "double precision"),
        "host_reachable = TRUE, host_latency_ms = v.column2, host_checked_at = %s, host_last_error = ''",
        (now,),
    )
    silent = [(pk, r.error[:500]) for pk, r in results.items() if r is not None and not r.reachable]
    bulk.update_rows(
        Machine,
        silent,
        ("integer", "varchar(500)"),
        "host_reachable = FALSE, host_latency_ms = NULL, host_checked_at = %s, host_last_error = v.column2",
        (now,),
    )
    unaddressed = [pk for pk, r in results.items() if r is None]
    if unaddressed:
        Machine.objects.filter(pk__in=unaddressed).update(
            host_reachable=None, host_latency_ms=None, host_checked_at=timezone.now(), host_last_error=NO_ADDRESS
        )


def host_ping_sync() -> int:
    """Periodic job (installs/periodic.py): one ping job per site on its queue, the sites spread evenly over
    HOST_PING_INTERVAL_S. Returns the number of sites."""
    slugs = list(
        Machine.objects.filter(rack__isnull=False)
        .order_by("rack__site__slug")
        .values_list("rack__site__slug", flat=True)
        .distinct()
    )
    return queues.spread(
        [(slug, slug) for slug in slugs], settings.HOST_PING_INTERVAL_S, ping_site, job_prefix="host-ping-",
        result_ttl=3600,
    )  # fmt: skip


def enqueue_host_pings(machines: list[Machine], actor: Actor) -> list[str]:
    """Queue a ping of these machines' hosts on their sites' workers (one job per site); audited. Refuses
    (before queuing anything) when a machine is in no rack: no site worker could send its ping."""
    loose = [m.hostname for m in machines if m.rack_id is None]
    if loose:
        raise HostPingRefused(f"Not in a rack, so no site worker can ping them: {', '.join(loose)}.")
    by_site: dict[str, list[int]] = {}
    for machine in machines:
        by_site.setdefault(machine.rack.site.slug, []).append(machine.pk)
    job_ids = []
    with transaction.atomic():
        for machine in machines:
            record(actor, "machine.host_ping", machine, {"queued": True})
        for slug, ids in by_site.items():
            job_id = f"host-ping-{slug}-{time.time_ns()}"
            queues.on_commit(
                job_id,
                lambda slug=slug, ids=ids, job_id=job_id: queues.site_queue(slug).enqueue(
                    ping_machines, ids, job_id=job_id, result_ttl=3600, failure_ttl=86400
                ),
            )
            job_ids.append(job_id)
    return job_ids
