"""What an install will do, decided when it is requested and frozen on the row.

The plan holds everything a step needs except secrets (the BMC password is read from
inventory when a step runs; the token is derived): editing the profile or the machine's
NICs later does not change an install already running.
"""

from django.core.exceptions import ValidationError

from inventory.models import BMC, InstallMethod, Machine, OSProfile

from .models import InstallState, StepKind

# The root password when a profile sets none: a crypt string no password can match, so root
# can log in only with the profile's SSH keys.
LOCKED_ROOT_HASH = "$6$locked$*"

# Which install state a step belongs to; the install's state follows its current step.
PHASE = {
    StepKind.CHECK_BMC: InstallState.PREPARING,
    StepKind.WRITE_BOOT_CONFIG: InstallState.PREPARING,
    StepKind.SET_BOOT_PXE: InstallState.POWERING,
    StepKind.POWER_CYCLE: InstallState.POWERING,
    StepKind.WAIT_BOOT: InstallState.BOOTING,
    StepKind.WAIT_INSTALLER: InstallState.INSTALLING,
    StepKind.AGENT_TASK: InstallState.INSTALLING,
    StepKind.REMOVE_BOOT_CONFIG: InstallState.FINALIZING,
    StepKind.SET_BOOT_DISK: InstallState.FINALIZING,
    StepKind.REBOOT: InstallState.FINALIZING,
    StepKind.VERIFY: InstallState.VERIFYING,
    StepKind.VERIFY_SSH: InstallState.VERIFYING,
}

WORKER, WAIT, AGENT = "worker", "wait", "agent"


def executor(kind: str, plan: dict) -> str:
    """Who moves a step on: a worker job runs it, the machine's callback ends its wait, or the agent runs it."""
    if kind in (StepKind.WAIT_BOOT, StepKind.WAIT_INSTALLER):
        return WAIT
    if kind == StepKind.AGENT_TASK:
        return AGENT
    if kind == StepKind.VERIFY and plan["profile"]["method"] == InstallMethod.IMAGE:
        return WAIT  # the installed OS's first-boot callback
    return WORKER


class PlanError(ValidationError):
    """The machine or profile cannot be installed as they are; the message says what to fix."""


def build_plan(machine: Machine, profile: OSProfile, *, for_install: bool = True) -> dict:
    """The plan for installing ``profile`` on ``machine``. ``for_install=False`` (previews) does not
    insist on what only a real install needs: a BMC and an image to write."""
    problems = []
    nic = machine.pxe_nic
    if nic is None:
        problems.append(f"{machine.hostname} has no PXE NIC: mark the NIC it network-boots from.")
    try:
        bmc = machine.bmc
    except BMC.DoesNotExist:
        bmc = None
        if for_install:
            problems.append(f"{machine.hostname} has no BMC: add its address and credentials.")
    if machine.rack_id is None:
        problems.append(f"{machine.hostname} is not in a rack, so provisioner does not know its site.")
    if for_install and profile.method == InstallMethod.IMAGE and not (profile.image_url and profile.image_sha256):
        problems.append(f"Profile {profile.name} has no image URL and SHA-256 to write.")
    if problems:
        raise PlanError(problems)
    site = machine.rack.site
    short, _, fqdn_domain = machine.hostname.partition(".")
    return {
        "version": 1,
        "site": {"slug": site.slug, "tftp_root": site.tftp_root, "base_url": site.base_url},
        "machine": {
            "hostname": machine.hostname,
            "short": short,
            "domain": fqdn_domain or site.domain,
            "mac": nic.mac,
            "ip": nic.ip,
            "prefix": nic.prefix_len,
            "gateway": nic.gateway,
            "dns": [d.strip() for d in site.dns_servers.split(",") if d.strip()],
            "rack_id": machine.rack_id,
        },
        "bmc": {"driver": bmc.driver if bmc else ""},
        "profile": {
            "name": profile.name,
            "method": profile.method,
            "kernel": profile.kernel,
            "initrd": profile.initrd,
            "kernel_args": profile.kernel_args,
            "template": profile.template,
            "image_url": profile.image_url,
            "image_sha256": profile.image_sha256,
            "target_disk": profile.target_disk,
            "legacy_anaconda": profile.legacy_anaconda,
            "root_password_hash": profile.root_password_hash or LOCKED_ROOT_HASH,
            "ssh_keys": _ssh_keys(profile, site),
        },
    }


def _ssh_keys(profile: OSProfile, site) -> list[str]:
    """The profile's keys, plus the site's login key so the SSH verification can log in."""
    from access.service import login_public_key

    keys = [k.strip() for k in profile.ssh_authorized_keys.splitlines() if k.strip()]
    site_key = login_public_key(site.pk)
    if site_key and site_key.strip() not in keys:
        keys.append(site_key.strip())
    return keys


def plan_steps(plan: dict) -> list[dict]:
    """The ordered steps of a plan: [{"kind", "task", "params"}]."""
    method = plan["profile"]["method"]
    steps = [
        {"kind": StepKind.CHECK_BMC},
        {"kind": StepKind.WRITE_BOOT_CONFIG},
        {"kind": StepKind.SET_BOOT_PXE},
        {"kind": StepKind.POWER_CYCLE},
        {"kind": StepKind.WAIT_BOOT},
    ]
    if method == InstallMethod.IMAGE:
        steps += [{"kind": StepKind.AGENT_TASK, "task": task, "params": params} for task, params in agent_tasks(plan)]
    else:
        steps.append({"kind": StepKind.WAIT_INSTALLER})
    steps += [{"kind": StepKind.REMOVE_BOOT_CONFIG}, {"kind": StepKind.SET_BOOT_DISK}]
    if method == InstallMethod.IMAGE:
        steps.append({"kind": StepKind.REBOOT})  # installers reboot themselves when done
    steps.append({"kind": StepKind.VERIFY})
    # Through the site's jump host when one is configured; skipped with the reason otherwise.
    steps.append({"kind": StepKind.VERIFY_SSH})
    return [{"task": "", "params": {}, **s} for s in steps]


def agent_tasks(plan: dict) -> list[tuple[str, dict]]:
    """The agent's work for an image install. A blank disk means the machine's first disk,
    resolved from the facts the agent registers with."""
    profile, machine = plan["profile"], plan["machine"]
    disk = profile["target_disk"]
    network = {"mac": machine["mac"], "style": "netplan"}
    if machine["ip"]:
        network.update(address=machine["ip"], prefix=machine["prefix"], gateway=machine["gateway"], dns=machine["dns"])
    fqdn = (
        machine["hostname"]
        if "." in machine["hostname"] or not machine["domain"]
        else (f"{machine['hostname']}.{machine['domain']}")
    )
    tasks = [
        ("wipe_disks", {"disks": [disk]}),
        (
            "write_image",
            {"url": profile["image_url"], "sha256": profile["image_sha256"], "disk": disk, "compression": "auto"},
        ),
        ("configure_network", network),
        ("set_hostname", {"hostname": fqdn}),
    ]
    if profile["ssh_keys"]:
        tasks.append(("ssh_keys", {"user": "root", "keys": profile["ssh_keys"]}))
    # Last: the installed OS calls back at its first boot, which is what the verify step waits for.
    tasks.append(("first_boot_callback", {}))
    return tasks
