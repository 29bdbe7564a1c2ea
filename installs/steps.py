"""What each worker step does: one short BMC call or file operation, safe to run twice.

Each function here is the runner of a worker step kind, named by its row in installs/stepkinds.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from access import errors as access_errors
from access.service import access_problem, verify_installed
from inventory import power, protection
from inventory.crypto import FieldDecryptError
from inventory.models import Machine
from provisioner import pxe
from provisioner.bmc import (
    BmcAuthError,
    BmcError,
    BmcUnsupported,
    BootDevice,
    Capability,
    PowerState,
    RaidLevel,
    VolumeRequest,
)
from provisioner.pxe import iso

from . import discovery_boot, media, render
from .events import emit
from .models import EventKind, Install


@dataclass
class StepFailed(Exception):
    reason: str  # CamelCase
    message: str  # for the technician
    retryable: bool = False

    def __str__(self):
        return self.message


def bmc_failure(exc: BmcError, hostname: str) -> StepFailed:
    if isinstance(exc, BmcAuthError):
        message = (
            f"The BMC of {hostname} ({exc.endpoint}) rejected the username or password. Fix the credentials in "
            "inventory and retry; provisioner does not retry by itself, because BMCs lock accounts."
        )
    elif isinstance(exc, BmcUnsupported):
        message = f"The BMC of {hostname} ({exc.endpoint}) refused the command: {exc.detail}."
    elif exc.retryable:
        message = (
            f"The BMC of {hostname} ({exc.endpoint}) did not answer: {exc.detail}. Check that it is powered, "
            "cabled to the management network and reachable from this site's worker."
        )
    else:
        message = str(exc)
    return StepFailed(exc.reason, message, exc.retryable)


def _driver(install: Install):
    machine = Machine.objects.select_related("bmc").get(pk=install.machine_id)
    try:
        return machine, power.driver_for(machine)
    except power.PowerActionRefused as exc:
        raise StepFailed("NoBmc", str(exc)) from None
    except FieldDecryptError as exc:
        raise StepFailed("BmcCredentialsUnreadable", str(exc)) from None
    except BmcAuthError as exc:  # no user of its own nor at its site (power.target_for)
        raise StepFailed("BmcNoUser", f"{machine.hostname}: {exc}") from None


def _bmc(install: Install, call, *, refuse_if_protected: str = "", capability: Capability | None = None):
    machine, driver = _driver(install)
    _refuse(machine, refuse_if_protected, capability)
    try:
        return machine, call(driver)
    except BmcError as exc:
        power.note_contact(machine.bmc.pk, ok=False, error=str(exc))
        raise bmc_failure(exc, machine.hostname) from None


def _refuse(machine: Machine, refuse_if_protected: str = "", capability: Capability | None = None) -> None:
    """StepFailed when the machine's protection or its driver refuses what a step is about to do."""
    if refuse_if_protected and protection.refused([machine], refuse_if_protected):
        raise StepFailed(
            "MachineProtected",
            f"{machine.hostname} was marked protected during the install: "
            f"{protection.REFUSED_WHEN_PROTECTED[refuse_if_protected]} refused. "
            "Unprotect it with a reason and retry if this install is intended.",
        )
    if capability is not None and capability not in power.capabilities_of(machine):
        # The plan checked the driver; this is the machine's driver now, which an edit may have changed.
        raise StepFailed(
            "CapabilityMissing",
            power.refusal(machine, capability)
            + " Nothing was sent to the BMC; use a workflow without this task, or change the machine's BMC driver.",
        )


def _uefi(install: Install) -> bool | None:
    """The machine's boot mode as it is now (set in inventory, or learned when its agent registered); None
    (leave the firmware's mode alone) when its driver does not declare the boot-mode capability."""
    machine = Machine.objects.select_related("bmc").get(pk=install.machine_id)
    return machine.uefi if Capability.BOOT_MODE in power.capabilities_of(machine) else None


def check_bmc(install: Install, step) -> dict:
    machine, latency = _bmc(install, lambda d: d.ping())
    power.note_contact(machine.bmc.pk, ok=True, latency_s=latency)
    return {"latency_ms": round(latency * 1000, 1)}


def hardware_raid(install: Install, step) -> dict:
    """Build the step's volume through the BMC; a volume of its name already there is success (a retry after a
    worker died mid-call finds the one it made)."""
    params = step.params
    drives = params.get("drives")
    # Worker steps get their params as the workflow wrote them: a template is not rendered for a BMC call.
    if params.get("level") not in RaidLevel.__members__ or not (
        drives is None or drives == "all" or (isinstance(drives, list) and all(isinstance(d, str) for d in drives))
    ):
        raise StepFailed(
            "HardwareRaidParamsInvalid",
            f"hardware_raid needs a level ({', '.join(RaidLevel)}) and drives as a list of drive ids or all, "
            f"not level={params.get('level')!r}, drives={drives!r}.",
        )
    request = VolumeRequest(
        level=RaidLevel(params["level"]),
        name=params.get("name") or "system",
        drives=None if drives is None else ("all",) if drives == "all" else tuple(drives),
        capacity_bytes=params.get("capacity_bytes"),
        controller=params.get("controller") or None,
    )
    machine, result = _bmc(
        install,
        lambda d: d.create_volume(request),
        refuse_if_protected="raid",
        capability=Capability.HARDWARE_RAID,
    )
    where = f"{request.name!r} on controller {result.controller}"
    if not result.created:
        return {"skipped": f"{where} is already there (volume {result.volume}): nothing sent"}
    if result.task:
        when = "at the next reset" if result.apply_time == "OnReset" else "as a task of the BMC"
        emit(
            install,
            EventKind.STEP,
            f"{request.level} volume {where} accepted; the controller builds it {when}",
            step=step,
        )
    else:
        emit(install, EventKind.STEP, f"{request.level} volume {where} created: {result.volume}", step=step)
    out = {"controller": result.controller, "volume": result.volume, "level": str(request.level)}
    if result.drives:
        out["drives"] = list(result.drives)
    if result.task:
        out["task"] = result.task
    if result.apply_time:
        out["apply_time"] = result.apply_time
    return out


def write_boot_config(install: Install, step) -> dict:
    plan = install.plan
    try:
        paths = pxe.write_all(
            plan.site.tftp_root,
            mac=plan.machine.mac,
            kernel=plan.profile.kernel,
            initrd=plan.profile.initrd,
            cmdline=render.cmdline(plan, render.boot_token(install)),
        )
    except OSError as exc:
        raise StepFailed(
            "BootConfigWriteFailed",
            f"Could not write the boot config into {plan.site.tftp_root}: {exc.strerror or exc}.",
            retryable=True,
        ) from None
    except ValueError as exc:
        raise StepFailed("BootConfigInvalid", f"The profile's boot settings are not usable: {exc}") from None
    return {"files": [str(p) for p in paths]}


def set_boot_pxe(install: Install, step) -> dict:
    uefi = _uefi(install)
    _bmc(install, lambda d: d.set_boot_device(BootDevice.PXE, once=True, uefi=uefi), refuse_if_protected="pxe")
    return {}


def power_cycle(install: Install, step) -> dict:
    machine, _ = _bmc(install, lambda d: d.power_cycle(), refuse_if_protected="cycle")
    power.note_power(machine.pk, PowerState.ON)
    return {}


def power_on(install: Install, step) -> dict:
    machine, _ = _bmc(install, lambda d: d.power_on())
    power.note_power(machine.pk, PowerState.ON)
    return {}


def power_off(install: Install, step) -> dict:
    soft = bool(step.params.get("soft"))
    machine, _ = _bmc(install, lambda d: d.power_off(soft=soft), refuse_if_protected="off")
    if not soft:
        power.note_power(machine.pk, PowerState.OFF)
    return {"soft": soft}


_BOOT_DEVICES = {"pxe": BootDevice.PXE, "disk": BootDevice.DISK, "cd": BootDevice.CD}
# Booting anything but the disk starts an install: protected machines refuse it.
_PROTECT_BOOT = {BootDevice.PXE: "pxe", BootDevice.CD: "cd"}


def set_boot_device(install: Install, step) -> dict:
    device = _BOOT_DEVICES[step.params.get("device", "pxe")]
    once = not step.params.get("persistent", False)
    mode = step.params.get("mode", "auto")
    protect = _PROTECT_BOOT.get(device, "")
    uefi = {"uefi": True, "legacy": False}.get(mode, _uefi(install))
    _bmc(install, lambda d: d.set_boot_device(device, once=once, uefi=uefi), refuse_if_protected=protect)
    return {"device": str(device), "once": once, "mode": mode}


def remove_boot_config(install: Install, step) -> dict:
    """The install's per-MAC config goes; at a site that discovers, a local-boot one takes its place."""
    plan = install.plan
    try:
        removed, local = discovery_boot.release_boot_config(plan.site.tftp_root, plan.site.slug, plan.machine.mac)
    except OSError as exc:
        raise StepFailed(
            "BootConfigRemoveFailed",
            f"Could not remove the per-MAC boot config from {plan.site.tftp_root}: {exc}.",
            retryable=True,
        ) from None
    out = {"removed": [str(p) for p in removed]}
    if local:
        out["local_boot"] = [str(p) for p in local]
    return out


def insert_media(install: Install, step) -> dict:
    """Build the install's ISO into the site's TFTP root and have the BMC attach it by URL. Safe to run twice:
    the ISO is rebuilt in place and the BMC holding that URL already is success."""
    plan = install.plan
    root = plan.site.tftp_root
    # Refused before the ISO is built: a protected machine or a driver without virtual media gets nothing.
    _refuse(Machine.objects.select_related("bmc").get(pk=install.machine_id), "cd", Capability.VIRTUAL_MEDIA)
    try:
        path = iso.build(
            media.iso_path(install),
            kernel=iso.source_file(root, plan.profile.kernel, "kernel"),
            initrd=iso.source_file(root, plan.profile.initrd, "initrd"),
            mac=plan.machine.mac,
            cmdline=media.cmdline(plan, render.boot_token(install)),
        )
    except iso.IsoBuildError as exc:
        raise StepFailed("MediaBuildFailed", f"Could not build the virtual media ISO: {exc}.") from None
    except ValueError as exc:
        raise StepFailed("BootConfigInvalid", f"The profile's boot settings are not usable: {exc}") from None
    except OSError as exc:
        raise StepFailed(
            "MediaWriteFailed",
            f"Could not write the virtual media ISO into {root}: {exc.strerror or exc}.",
            retryable=True,
        ) from None
    url = media.iso_url(install)
    _bmc(
        install,
        lambda d: d.insert_media(url),
        refuse_if_protected="cd",
        capability=Capability.VIRTUAL_MEDIA,
    )
    # The URL is no credential, but it opens the ISO, which holds one: the step's result shows its size only.
    return {"iso_bytes": path.stat().st_size}


def eject_media(install: Install, step) -> dict:
    """Eject the virtual CD and remove the install's ISO; both done already is success."""
    _, ejected = _bmc(install, lambda d: d.eject_media(), capability=Capability.VIRTUAL_MEDIA)
    try:
        removed = iso.remove(install.plan.site.tftp_root, media.iso_name(install))
    except OSError as exc:
        raise StepFailed(
            "MediaRemoveFailed", f"Could not remove the virtual media ISO: {exc.strerror or exc}.", retryable=True
        ) from None
    return {"ejected": ejected, "iso_removed": removed}


def set_boot_disk(install: Install, step) -> dict:
    _bmc(install, lambda d: d.set_boot_device(BootDevice.DISK, once=False, uefi=_uefi(install)))
    return {}


def reboot(install: Install, step) -> dict:
    machine, _ = _bmc(install, lambda d: d.power_cycle())
    power.note_power(machine.pk, PowerState.ON)
    return {}


def verify(install: Install, step) -> dict:
    machine, state = _bmc(install, lambda d: d.power_state())
    power.note_power(machine.pk, state)
    if state != PowerState.ON:
        raise StepFailed(
            "InstalledOSNotRunning",
            f"The installer reported success, but {machine.hostname} is powered {state}.",
            retryable=True,
        )
    return {"power": str(state)}


def verify_ssh(install: Install, step) -> dict:
    """Log in to the installed machine through the site's jump host and check what a technician would."""
    problem = access_problem(install.machine_id)
    if problem:
        return {"skipped": f"SSH verification skipped: {problem}"}
    machine = install.plan.machine
    expected = {"hostname": machine.short, "mac": machine.mac, "ip": machine.ip, "prefix": machine.prefix}
    if install.plan.profile.target_disk:
        expected["root_disk"] = install.plan.profile.target_disk
    try:
        checks = verify_installed(install.machine_id, expected, timeout_s=settings.SSH_VERIFY_TIMEOUT_S)
    except access_errors.AccessError as exc:
        raise StepFailed(exc.reason, exc.message, exc.retryable) from None
    for check in checks:
        emit(install, EventKind.STEP, f"SSH check {check.name}: {'ok' if check.ok else 'FAILED'} ({check.detail})")
    failed = [c for c in checks if not c.ok]
    if failed:
        raise StepFailed(
            "VerifyCheckFailed",
            "The installed OS failed its checks: " + "; ".join(f"{c.name}: {c.detail}" for c in failed),
        )
    return {"checks": {c.name: c.ok for c in checks}}
