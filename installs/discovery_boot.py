"""What a network-booting machine gets at a site that discovers unknown machines, and the TFTP root kept in line.

With a site's discovery on, its default configs boot the memory OS in discovery mode (the site's memory OS
profile, ``provisioner.mode=discover provisioner.url=<base_url>``), and every MAC known to inventory has a
per-MAC file that boots its local disk, so a known machine never takes the discovery path. An install's own
per-MAC file is never replaced (``pxe.ensure_local`` creates only where nothing is), and when an install ends
its file gives way to a local-boot one instead of being removed (``release_boot_config``). With discovery off
the defaults boot the local disk and the local-boot files are removed.

``reconcile(site_id)`` does all of it, idempotently, as a job on the site's queue (the worker beside the TFTP
root): ``enqueue_reconcile`` queues it once the change commits (a site saved, a NIC added, changed or deleted,
a machine moved, a discovered machine accepted), and the periodic ``reconcile_all`` catches a job lost with Redis.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from core import queues
from inventory.models import NIC, Site
from provisioner import pxe

log = logging.getLogger(__name__)

# Jobs still to run (a change committed after they were queued is seen by them).
_WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
# Switching a large site's discovery on creates two fsynced files per known MAC: about 4 ms each, so 5,000
# machines with two NICs take 80 s, past RQ_JOB_TIMEOUT_S. A reconcile cut short resumes where it stopped.
RECONCILE_TIMEOUT_S = 900


def site_for(address: str | None) -> Site | None:
    """The site whose provisioning networks hold ``address``: the most specific network wins, then a site that
    discovers. None when no site's networks hold it (or it is no address)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:  # a dual-stack listener reports IPv4 clients so
        ip = ip.ipv4_mapped
    best, rank = None, None
    for site in Site.objects.exclude(provisioning_networks="").select_related("memory_os"):
        try:
            networks = site.networks()
        except ValueError:
            continue  # a typo in one site's networks must not stop every other site's discovery
        for network in networks:
            if network.version == ip.version and ip in network:
                candidate = (network.prefixlen, site.discovery, -site.pk)
                if rank is None or candidate > rank:
                    best, rank = site, candidate
    return best


def discovery_boot(site: Site) -> pxe.DiscoveryBoot | None:
    """The memory OS boot of an unknown machine at ``site``, or None: discovery off, or no usable memory OS
    profile (said in the log; its machines then boot their disks, as with discovery off)."""
    if not site.discovery:
        return None
    profile = site.memory_os
    if profile is None:
        log.warning("site %s discovers, but has no memory OS profile: unknown machines boot their disks", site.slug)
        return None
    try:
        cmdline = pxe.discovery_cmdline(site.base_url, profile.kernel_args)
        return pxe.DiscoveryBoot(profile.kernel, profile.initrd, cmdline)
    except ValueError as exc:
        log.error("site %s: the memory OS profile %s cannot boot discovery: %s", site.slug, profile.name, exc)
        return None


def ipxe_boot(mac: str, address: str | None) -> pxe.DiscoveryBoot | None:
    """What iPXE boots for a MAC with no armed install: the memory OS when the MAC is unknown to inventory and
    it asks from the provisioning network of a site that discovers; else None (its local disk)."""
    if NIC.objects.filter(mac=mac).exists():
        return None
    site = site_for(address)
    return discovery_boot(site) if site is not None else None


def known_macs(site: Site) -> set[str]:
    """The MACs that must never take the site's discovery path: every NIC of a machine racked at the site, and
    of every machine in no rack (whose site inventory cannot tell)."""
    nics = NIC.objects.filter(Q(machine__rack__site=site) | Q(machine__rack__isnull=True))
    return set(nics.values_list("mac", flat=True))


def reconcile(site_id: int) -> str:
    """RQ job on the site's queue: the site's TFTP root as its discovery setting and inventory say. Idempotent;
    writes only what differs, and never replaces a file that is not its own."""
    site = Site.objects.select_related("memory_os").filter(pk=site_id).first()
    if site is None:
        return "the site is gone"
    root = Path(site.tftp_root)
    if site.discovery:
        known = known_macs(site)
        # The local-boot files first: a known machine must never read a discovering default without its own file.
        created = sum(len(pxe.ensure_local(root, mac)) for mac in sorted(known))
        removed = sum(len(pxe.remove_local(root, mac)) for mac in sorted(pxe.local_macs(root) - known))
        written = pxe.sync_defaults(root, discovery_boot(site))
    else:
        # The defaults first: unknown machines stop discovering before known ones lose their files.
        written = pxe.sync_defaults(root, None)
        created = 0
        removed = sum(len(pxe.remove_local(root, mac)) for mac in sorted(pxe.local_macs(root)))
    summary = f"{created} local-boot file(s) created, {removed} removed, {len(written)} default(s) written"
    if created or removed or written:
        log.info("site %s: PXE reconcile: %s", site.slug, summary)
    return summary


_JOB = {"result_ttl": 0, "failure_ttl": 86400, "job_timeout": RECONCILE_TIMEOUT_S}


def enqueue_reconcile(site: Site) -> None:
    """Queue ``reconcile`` of ``site`` on its queue once the current transaction commits: one waiting job is
    enough (it reads what is committed when it runs), so a burst of changes queues one job, not one each."""
    site_id, slug = site.pk, site.slug

    def enqueue():
        queue = queues.site_queue(slug)
        job_id = f"pxe-reconcile-{site_id}"
        try:
            queue.enqueue(reconcile, site_id, job_id=job_id, unique=True, **_JOB)
            return
        except DuplicateJobError:
            try:
                if Job.fetch(job_id, connection=queue.connection).get_status() in _WAITING:
                    return
            except NoSuchJobError:
                pass
        # The one there is running (it may have read before this change), or failed: another after it.
        queue.enqueue(reconcile, site_id, job_id=f"{job_id}-{time.time_ns()}", **_JOB)

    queues.on_commit(f"site {slug}: PXE reconcile", enqueue)


def enqueue_for_discovering_sites() -> None:
    """An inventory change that may move a MAC in or out of a site (a NIC, a machine's rack): every site that
    discovers is reconciled. Sites that do not have no local-boot files to keep."""
    for site in Site.objects.filter(discovery=True).only("pk", "slug"):
        enqueue_reconcile(site)


def reconcile_all() -> int:
    """Periodic (installs/periodic.py): every site's reconcile, spread over the period. How many were queued."""
    jobs = [(slug, pk) for pk, slug in Site.objects.order_by("slug").values_list("pk", "slug")]
    return queues.spread(
        jobs, settings.PXE_RECONCILE_INTERVAL_S, reconcile, job_prefix="pxe-reconcile-periodic-", result_ttl=0
    )


def site_discovers(slug: str) -> bool:
    return Site.objects.filter(slug=slug, discovery=True).exists()


def release_boot_config(tftp_root: str, site_slug: str, mac: str) -> tuple[list[Path], list[Path]]:
    """An install's per-MAC files when it no longer needs them (its remove_boot_config step, its cleanup):
    removed, or, at a site that discovers, replaced by the MAC's local-boot files in one atomic step each (the
    machine must not find the discovering default meanwhile). Returns (removed, written)."""
    if site_discovers(site_slug):
        return [], pxe.write_local(tftp_root, mac)
    return pxe.remove(tftp_root, mac), []
