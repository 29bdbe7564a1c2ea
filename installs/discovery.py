"""Discovery: a machine whose MAC is not in inventory network-boots at a site that discovers, its memory OS
registers the hardware (docs/agent-api.md, Discovery), and a technician accepts it into a rack or discards it.

The machine presents no credential: a registration is taken from whoever is on the site's provisioning networks
(installs/discovery_api.py checks the address, the rate and the body first). So a registration can only ever add
or refresh a *waiting* row; it never touches inventory, and the only tasks its agent is ever handed are
``inventory`` (report the facts again) and ``poweroff``. Its key authenticates its later calls; the row keeps
only the key's SHA-256. Every registration, refusal of a known machine, accept and discard is audited (never the
key). docs/design.md, Threat model, says what an unauthenticated registration can and cannot do.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.service import Actor, record
from inventory.models import (
    BMC,
    NIC,
    BmcDriver,
    DiscoveredMachine,
    DiscoveryState,
    Machine,
    MachineStatus,
    Rack,
    Site,
)
from inventory.validators import validate_bmc_address

from . import discovery_boot
from .discovery_facts import nic_macs, text

W = DiscoveryState
INVENTORY, POWEROFF = "inventory", "poweroff"
TASK_KINDS = (INVENTORY, POWEROFF)
# A poll refreshes last_seen_at at most this often: one write per machine per half minute, not per poll.
SEEN_EVERY_S = 30


@dataclass
class Refused(Exception):
    """A machine's call refused: its HTTP status, the CamelCase reason of the protocol, a message for the
    technician reading the agent's console, and any extra members of the answer (``then``, ``retry_after_s``)."""

    status: int
    reason: str
    message: str
    extra: dict = field(default_factory=dict)

    def __str__(self):
        return self.message


class DiscoveryRefused(Exception):
    """A person's action that cannot be done (the entry is not waiting, say); the message says why."""


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _agent(mac: str) -> Actor:
    return Actor.agent(f"discovery {mac}")


# --- the machine's side -------------------------------------------------------------------------------------


def register(site: Site, address: str, mac: str, key: str, facts: dict) -> DiscoveredMachine:
    """Take a registration (``mac`` and ``facts`` already checked, the site's discovery on): a new waiting row,
    or the same MAC and key again. Refused when the MAC is in inventory, was discarded, is waiting with another
    key, or the site's list is full."""
    _refuse_known(site, address, mac, facts)
    discarded = DiscoveredMachine.objects.filter(mac=mac, state=W.DISCARDED).select_related("site").first()
    if discarded is not None:
        record(_agent(mac), "discovery.discarded_refused", discarded, {"mac": mac, "address": address})
        raise _discarded(discarded)
    for _ in range(2):  # a second round only when a concurrent first registration of the MAC won the insert
        try:
            with transaction.atomic():
                return _register(site, address, mac, key_hash(key), facts)
        except IntegrityError:
            continue
    raise Refused(409, "KeyMismatch", f"{mac} was registered by another agent at the same moment.")


def _refuse_known(site: Site, address: str, mac: str, facts: dict) -> None:
    macs = [mac, *(m for m in nic_macs(facts) if m != mac)]
    known = {nic.mac: nic for nic in NIC.objects.filter(mac__in=macs).select_related("machine")}
    if not known:
        return
    nic = known.get(mac) or known[next(m for m in macs if m in known)]
    details = {"mac": mac, "known_mac": nic.mac, "address": address, "site": site.slug}
    record(_agent(mac), "discovery.known_machine_refused", nic.machine, details)
    if nic.mac == mac:
        # Its per-MAC local-boot file was missing when it booted (written since, or being written): a reboot
        # reads it and boots the disk.
        raise Refused(
            403,
            "KnownMachine",
            f"{mac} is {nic.machine.hostname} in inventory: it boots its local disk, not discovery. Rebooting.",
            {"then": "reboot"},
        )
    # The boot NIC is unknown but another NIC is a known machine's: rebooting would come back here, so the
    # agent is refused and the machine waits for a technician.
    raise Refused(
        403,
        "NicOfKnownMachine",
        f"This machine's NIC {nic.mac} belongs to {nic.machine.hostname} in inventory, but it booted from {mac}, "
        f"which inventory does not know. Add {mac} to {nic.machine.hostname} as its PXE NIC.",
    )


def _register(site: Site, address: str, mac: str, digest: str, facts: dict) -> DiscoveredMachine:
    now = timezone.now()
    row = DiscoveredMachine.objects.select_for_update().filter(mac=mac).first()
    if row is None:
        _refuse_full(site)
        row = DiscoveredMachine.objects.create(
            site=site, mac=mac, key_hash=digest, address=address, facts=facts, last_seen_at=now
        )
        _audit_registration(row, "discovery.registered")
        return row
    if row.state == W.DISCARDED:  # discarded meanwhile (register() refused it if it was before)
        raise _discarded(row)
    action = "discovery.registered_again"
    if row.state == W.ACCEPTED or row.key_hash != digest:
        if row.state == W.WAITING and row.last_seen_at > now - timedelta(seconds=settings.DISCOVERY_REKEY_AFTER_S):
            raise Refused(
                409,
                "KeyMismatch",
                f"{mac} is registered and still polling with another key. If this machine rebooted, its old "
                f"registration is taken over once it has been silent for {settings.DISCOVERY_REKEY_AFTER_S} s.",
            )
        # Waiting but silent (its memory OS rebooted and lost the key), or accepted once and no longer in
        # inventory (its machine deleted since): the registration starts again with this key.
        action = "discovery.rekeyed" if row.state == W.WAITING else "discovery.registered"
        if row.state == W.ACCEPTED:
            _refuse_full(site)
        row.state, row.machine, row.decided_by_label, row.decided_at = W.WAITING, None, "", None
        row.key_hash, row.pending_task, row.registrations, row.first_seen_at = digest, None, 0, now
    row.site, row.address, row.facts, row.last_seen_at = site, address, facts, now
    row.registrations += 1
    row.save()
    _audit_registration(row, action)
    return row


def _discarded(row: DiscoveredMachine) -> Refused:
    return Refused(
        403,
        "Discarded",
        f"{row.mac} was discarded from discovery at {row.site.name} by {row.decided_by_label or 'a technician'}. "
        "To discover it again, forget it on the Discovered page.",
    )


def _refuse_full(site: Site) -> None:
    waiting = DiscoveredMachine.objects.filter(site=site, state=W.WAITING).count()
    if waiting >= settings.DISCOVERY_MAX_WAITING:
        raise Refused(
            503,
            "DiscoveryFull",
            f"{site.name} already has {waiting} machines waiting in Discovered, its limit. A technician must accept "
            "or discard some before more can register; this machine will try again.",
            {"retry_after_s": 60.0},
        )


def _audit_registration(row: DiscoveredMachine, action: str) -> None:
    record(
        _agent(row.mac),
        action,
        row,
        {
            "mac": row.mac,
            "address": row.address,
            "site": row.site.slug,
            "registrations": row.registrations,
            "vendor": row.vendor,
            "model": row.model,
            "serial": row.serial,
        },
    )


def authenticate(pk: int, key: str) -> DiscoveredMachine:
    """The registration ``pk`` if ``key`` is its key; Refused 401 otherwise (the same answer for a wrong key and
    for no such registration, so the ids tell a stranger nothing)."""
    row = DiscoveredMachine.objects.select_related("site").filter(pk=pk).first()
    if row is None or not key or not hmac.compare_digest(row.key_hash, key_hash(key)):
        raise Refused(401, "Unauthorized", "No registration with this id and key.")
    return row


def _open(row: DiscoveredMachine) -> None:
    """Refused 401 once the registration is closed: decided, and its poweroff done."""
    if row.state == W.WAITING or row.pending_task:
        return
    if row.state == W.DISCARDED:
        raise Refused(401, "Discarded", f"{row.mac} was discarded by {row.decided_by_label or 'a technician'}.")
    raise Refused(401, "Unauthorized", f"{row.mac} is in inventory now; its discovery is closed.")


def poll(row: DiscoveredMachine) -> dict:
    """The answer to a poll: the pending task, if any, and when to poll again."""
    _open(row)
    now = timezone.now()
    DiscoveredMachine.objects.filter(pk=row.pk, last_seen_at__lt=now - timedelta(seconds=SEEN_EVERY_S)).update(
        last_seen_at=now
    )
    return {"task": row.pending_task or None, "poll_s": settings.DISCOVERY_POLL_S}


def report_facts(pk: int, task_id: str, facts: dict) -> None:
    """The facts an ``inventory`` task collected (checked already): they replace the registered ones."""
    with transaction.atomic():
        row = DiscoveredMachine.objects.select_for_update().select_related("site").get(pk=pk)
        _open(row)
        _current(row, task_id, INVENTORY)
        row.facts, row.facts_updated_at, row.pending_task = facts, timezone.now(), None
        row.last_seen_at = row.facts_updated_at
        row.save(update_fields=["facts", "facts_updated_at", "pending_task", "last_seen_at"])
        record(_agent(row.mac), "discovery.facts", row, {"task": task_id, "disks": len(facts.get("disks") or [])})


def task_done(pk: int, task_id: str, error: str = "") -> None:
    """The agent finished (or could not run) the pending task; for ``poweroff`` it now powers off."""
    with transaction.atomic():
        row = DiscoveredMachine.objects.select_for_update().select_related("site").get(pk=pk)
        _open(row)
        kind = _current(row, task_id, None)
        row.pending_task, row.last_seen_at = None, timezone.now()
        row.save(update_fields=["pending_task", "last_seen_at"])
        details = {"task": task_id, "kind": kind, **({"error": error} if error else {})}
        action = "discovery.powered_off" if kind == POWEROFF and not error else "discovery.task_done"
        record(_agent(row.mac), action, row, details)


def _current(row: DiscoveredMachine, task_id: str, kind: str | None) -> str:
    task = row.pending_task or {}
    if task.get("id") != task_id or (kind is not None and task.get("kind") != kind):
        current = f"{task['kind']} {task['id']}" if task else "none"
        raise Refused(409, "NotCurrentTask", f"Task {task_id} is not this machine's pending task (that is {current}).")
    return task["kind"]


def _task(kind: str) -> dict:
    return {"id": f"{kind}-{secrets.token_hex(6)}", "kind": kind}


# --- the technician's side ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where an accepted machine goes, as the accept form or the API gives it."""

    hostname: str
    rack: Rack | None
    position_u: int | None
    height_u: int = 1


def accept(pk: int, placement: Placement, actor: Actor) -> Machine:
    """Make the waiting entry ``pk`` a machine of the inventory (status new) with its NICs (the boot MAC its PXE
    NIC), and a BMC at the address its facts report (the site's default credentials), validated as the admin
    validates; then tell its agent to power off. ValidationError names the field at fault, DiscoveryRefused says
    why the entry cannot be accepted; nothing is written then."""
    with transaction.atomic():
        row = _waiting(pk, "accepted")
        machine = _new_machine(row, placement)
        nics = _nics(row, machine)
        bmc = _bmc(row, machine)
        row.state, row.machine, row.pending_task = W.ACCEPTED, machine, _task(POWEROFF)
        row.decided_by_label, row.decided_at = actor.label[:150], timezone.now()
        row.save()
        details = {
            "mac": row.mac,
            "hostname": machine.hostname,
            "rack": str(machine.rack) if machine.rack else None,
            "position_u": machine.position_u,
            "nics": [n.mac for n in nics],
            "bmc": bmc.address if bmc else None,
        }
        record(actor, "discovery.accepted", row, details)
        record(actor, "machine.accepted_from_discovery", machine, {"discovered": row.pk, **details})
        discovery_boot.enqueue_reconcile(row.site)
    return machine


def _waiting(pk: int, what: str) -> DiscoveredMachine:
    row = DiscoveredMachine.objects.select_for_update().select_related("site").filter(pk=pk).first()
    if row is None:
        raise DiscoveryRefused(f"There is no discovered machine {pk}.")
    if row.state != W.WAITING:
        raise DiscoveryRefused(f"Discovered machine {row.mac} is {row.state}: only a waiting one can be {what}.")
    return row


def _new_machine(row: DiscoveredMachine, placement: Placement) -> Machine:
    facts = row.facts
    machine = Machine(
        hostname=placement.hostname.strip().lower(),
        rack=placement.rack,
        position_u=placement.position_u,
        height_u=placement.height_u,
        serial=text(facts, "dmi", "serial")[:100],
        vendor=text(facts, "dmi", "vendor")[:100],
        model=text(facts, "dmi", "product")[:100],
        status=MachineStatus.NEW,
        facts=facts,
    )
    machine.full_clean()
    if placement.rack is not None and placement.rack.site_id != row.site_id:
        raise ValidationError(
            {"rack": f"Rack {placement.rack} is at {placement.rack.site}, but this machine booted at {row.site}."}
        )
    machine.save()
    return machine


def _nics(row: DiscoveredMachine, machine: Machine) -> list[NIC]:
    facts_nics = {n["mac"]: n for n in row.facts.get("nics") or () if isinstance(n, dict) and "mac" in n}
    macs = [row.mac, *(m for m in nic_macs(row.facts) if m != row.mac)]
    made = []
    for mac in macs:
        seen = facts_nics.get(mac, {})
        speed = seen.get("speed_mbps")
        nic = NIC(
            machine=machine,
            mac=mac,
            name=str(seen.get("name") or "")[:32],
            is_pxe=mac == row.mac,
            speed_mbps=speed if isinstance(speed, int) and 0 < speed < 2**31 else None,
            link=seen.get("link") if isinstance(seen.get("link"), bool) else None,
        )
        try:
            nic.full_clean(exclude=["machine"])
        except ValidationError as exc:
            owner = NIC.objects.filter(mac=mac).select_related("machine").first()
            if owner is not None:
                raise ValidationError(
                    f"NIC {mac} of this machine is already a NIC of {owner.machine.hostname} in inventory."
                ) from None
            raise ValidationError(f"NIC {mac}: {'; '.join(exc.messages)}") from None
        nic.save()
        made.append(nic)
    return made


def _bmc(row: DiscoveredMachine, machine: Machine) -> BMC | None:
    """The BMC at the address the memory OS read from it (ipmitool lan print), with no credentials of its own:
    the site's default ones apply. None when the facts name no usable address."""
    reported = row.facts.get("bmc") if isinstance(row.facts.get("bmc"), dict) else {}
    address = reported.get("address")
    if not isinstance(address, str) or not address or address in ("0.0.0.0", "::"):
        return None
    try:
        validate_bmc_address(address)
    except ValidationError:
        return None
    port = reported.get("port")
    return BMC.objects.create(
        machine=machine,
        driver=BmcDriver.IPMI,
        address=address,
        port=port if isinstance(port, int) and 1 <= port <= 65535 else 623,
    )


def discard(pk: int, actor: Actor) -> DiscoveredMachine:
    """Not ours (or not now): the entry is kept as discarded, so the machine is refused if it registers again,
    and its agent is told to power off."""
    with transaction.atomic():
        row = _waiting(pk, "discarded")
        row.state, row.pending_task = W.DISCARDED, _task(POWEROFF)
        row.decided_by_label, row.decided_at = actor.label[:150], timezone.now()
        row.save()
        record(actor, "discovery.discarded", row, {"mac": row.mac, "site": row.site.slug, "serial": row.serial})
    return row


def forget(pk: int, actor: Actor) -> None:
    """Delete a discarded entry, so that the machine is discovered afresh when it next registers."""
    with transaction.atomic():
        row = DiscoveredMachine.objects.select_for_update().select_related("site").filter(pk=pk).first()
        if row is None:
            raise DiscoveryRefused(f"There is no discovered machine {pk}.")
        if row.state != W.DISCARDED:
            raise DiscoveryRefused(f"Discovered machine {row.mac} is {row.state}: only a discarded one is forgotten.")
        record(actor, "discovery.forgotten", row, {"mac": row.mac, "site": row.site.slug, "serial": row.serial})
        row.delete()


def request_inventory(pk: int, actor: Actor) -> DiscoveredMachine:
    """Ask the waiting machine's agent to collect and report its facts again (after a part was swapped)."""
    with transaction.atomic():
        row = _waiting(pk, "asked for its facts")
        row.pending_task = _task(INVENTORY)
        row.save(update_fields=["pending_task"])
        record(actor, "discovery.inventory_requested", row, {"mac": row.mac, "task": row.pending_task["id"]})
    return row
