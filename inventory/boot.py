"""Pointing a machine's next boot (or every boot) at a device through its BMC, as a technician asks from the API:
checked and queued on the machine's site worker like the power actions (inventory/power.py), run there, audited as
``machine.boot`` with the device and whether it persists. A protected machine refuses network and CD boots (they
lead to a reinstall); the disk stays allowed."""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.db import transaction

from audit.service import Actor, record
from core import queues
from provisioner.bmc import BmcError, BootDevice, Capability

from . import power, protection
from .models import Machine

# What a person may point the boot at (BootDevice's others are read-only states), with the protection rule's key.
DEVICES = {BootDevice.PXE: "pxe", BootDevice.DISK: "", BootDevice.CD: "cd"}


def _refusal(machine: Machine, device: BootDevice) -> tuple[str, str] | None:
    """(why for the audit, what to tell the technician), or None when the boot may be set."""
    rule = DEVICES[device]
    if rule and protection.refused([machine], rule):
        return "protected", protection.refusal_message([machine], rule)
    if not power.can(machine, "pxe"):  # the boot-device capability, whatever the device
        return "capability", power.refusal(machine, Capability.BOOT_DEVICE)
    if machine.rack_id is None:
        return "not_in_rack", f"{machine.hostname} is not in a rack, so no site worker can reach its BMC."
    return None


def enqueue_boot(machine: Machine, device: BootDevice, persistent: bool, actor: Actor) -> str:
    """Queue the boot device on the machine's site worker; the job id. PowerActionRefused (audited) when the
    machine may not or cannot."""
    device = BootDevice(device)
    if refused := _refusal(machine, device):
        with transaction.atomic():
            details = {"ok": False, "refused": refused[0], "device": str(device), "persistent": persistent}
            record(actor, "machine.boot", machine, details)
        raise power.PowerActionRefused(refused[1])
    job_id = f"machine-{machine.pk}-boot-{device}-{time.time_ns()}"
    queues.site_queue(machine.rack.site.slug).enqueue(
        run_boot,
        machine.pk,
        str(device),
        persistent,
        actor.label,
        actor.user.pk if actor.user is not None else None,
        job_id=job_id,
        result_ttl=3600,
        failure_ttl=86400,
    )
    return job_id


def run_boot(machine_id: int, device: str, persistent: bool, actor_label: str, user_id: int | None) -> str:
    """RQ job for enqueue_boot: the actor by name and id, never a secret or a model. Checked again (the machine may
    have been protected since), then one BMC call."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    actor = Actor.for_user(user) if user is not None else Actor.system(actor_label)
    machine = Machine.objects.select_related("bmc", "rack__site").get(pk=machine_id)
    wanted = {"device": device, "persistent": persistent}
    if refused := _refusal(machine, BootDevice(device)):
        record(actor, "machine.boot", machine, {"ok": False, "refused": refused[0], **wanted})
        return f"{machine.hostname}: {refused[1]}"
    started = time.monotonic()
    try:
        uefi = machine.uefi if Capability.BOOT_MODE in power.capabilities_of(machine) else None
        power.driver_for(machine).set_boot_device(BootDevice(device), once=not persistent, uefi=uefi)
    except (BmcError, power.PowerActionRefused) as exc:
        if isinstance(exc, BmcError):
            power.note_contact(machine.bmc.pk, ok=False, error=str(exc))
        record(actor, "machine.boot", machine, {"ok": False, "error": str(exc), **wanted})
        return f"{machine.hostname}: {exc}"
    power.note_contact(machine.bmc.pk, ok=True, latency_s=time.monotonic() - started)
    record(actor, "machine.boot", machine, {"ok": True, **wanted})
    when = "from now on" if persistent else "at its next start"
    return f"{machine.hostname}: boots from {device} {when}"
