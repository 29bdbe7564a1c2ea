"""What an install will do, decided when it is requested and frozen on the row.

The plan holds everything a step needs except secrets (the BMC password is read from
inventory when a step runs; the token is derived): editing the profile or the machine's
NICs later does not change an install already running.

``Plan`` is a frozen dataclass; the database keeps it as JSON (``PlanField``), with a ``version``
so a later shape can still read the plans stored before it. A plan stored without one is version 1.
``install.plan`` is a Plan (set either a Plan or its JSON).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from access.service import login_public_key
from inventory.models import BMC, InstallMethod, Machine, OSProfile, Site

from .stepkinds import KINDS, Mover

# The shape to_json writes; from_json reads this one and every one before it.
PLAN_VERSION = 1

# The root password when a profile sets none: a crypt string no password can match, so root
# can log in only with the profile's SSH keys.
LOCKED_ROOT_HASH = "$6$locked$*"


@dataclass(frozen=True)
class SitePlan:
    slug: str
    tftp_root: str
    base_url: str


@dataclass(frozen=True)
class MachinePlan:
    hostname: str
    short: str  # the host name without its domain
    domain: str
    mac: str  # the PXE NIC's
    ip: str | None  # blank: DHCP
    prefix: int | None
    gateway: str | None
    dns: tuple[str, ...]
    rack_id: int

    @property
    def fqdn(self) -> str:
        return self.hostname if "." in self.hostname or not self.domain else f"{self.hostname}.{self.domain}"


@dataclass(frozen=True)
class BmcPlan:
    driver: str  # blank in previews of a machine with no BMC


@dataclass(frozen=True)
class ProfilePlan:
    name: str
    method: str  # InstallMethod
    kernel: str
    initrd: str
    kernel_args: str
    template: str
    image_url: str
    image_sha256: str
    target_disk: str  # blank: the machine's first disk
    legacy_anaconda: bool
    root_password_hash: str
    ssh_keys: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    site: SitePlan
    machine: MachinePlan
    bmc: BmcPlan
    profile: ProfilePlan
    step_count: int = 0  # 0 in plans stored before it was recorded: count the steps
    version: int = PLAN_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "site": dataclasses.asdict(self.site),
            "machine": {**dataclasses.asdict(self.machine), "dns": list(self.machine.dns)},
            "bmc": dataclasses.asdict(self.bmc),
            "profile": {**dataclasses.asdict(self.profile), "ssh_keys": list(self.profile.ssh_keys)},
            "step_count": self.step_count,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        version = data.get("version", 1)
        if version != PLAN_VERSION:
            raise ValueError(f"plan version {version!r}: this release reads version {PLAN_VERSION}")
        try:
            machine, profile = data["machine"], data["profile"]
            return cls(
                site=SitePlan(**data["site"]),
                machine=MachinePlan(**{**machine, "dns": tuple(machine["dns"])}),
                bmc=BmcPlan(**data["bmc"]),
                profile=ProfilePlan(**{**profile, "ssh_keys": tuple(profile["ssh_keys"])}),
                step_count=data.get("step_count", 0),
                version=PLAN_VERSION,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a version {PLAN_VERSION} plan: {exc}") from None


class _PlanAttribute(DeferredAttribute):
    """``install.plan``: the stored JSON becomes a Plan when it is first read, not when the row is
    loaded, so a row whose plan this release cannot read still loads (a list, a count), and fails by
    name only where its plan is used."""

    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, dict):
            value = instance.__dict__[self.field.attname] = Plan.from_json(value)
        return value

    def __set__(self, instance, value):
        instance.__dict__[self.field.attname] = value


class PlanField(models.JSONField):
    """A Plan in Python, its JSON in the database."""

    descriptor_class = _PlanAttribute

    def pre_save(self, model_instance, add):
        return model_instance.__dict__[self.attname]  # as it was set: a Plan or its JSON, unread

    def get_prep_value(self, value):
        return super().get_prep_value(value.to_json() if isinstance(value, Plan) else value)

    def value_to_string(self, obj):
        value = self.value_from_object(obj)
        return value.to_json() if isinstance(value, Plan) else value


class PlanError(ValidationError):
    """The machine or profile cannot be installed as they are; the message says what to fix."""


def build_plan(machine: Machine, profile: OSProfile, *, for_install: bool = True) -> Plan:
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
    return Plan(
        site=SitePlan(slug=site.slug, tftp_root=site.tftp_root, base_url=site.base_url),
        machine=MachinePlan(
            hostname=machine.hostname,
            short=short,
            domain=fqdn_domain or site.domain,
            mac=nic.mac,
            ip=nic.ip,
            prefix=nic.prefix_len,
            gateway=nic.gateway,
            dns=tuple(d.strip() for d in site.dns_servers.split(",") if d.strip()),
            rack_id=machine.rack_id,
        ),
        bmc=BmcPlan(driver=bmc.driver if bmc else ""),
        profile=ProfilePlan(
            name=profile.name,
            method=profile.method,
            kernel=profile.kernel,
            initrd=profile.initrd,
            kernel_args=profile.kernel_args,
            template=profile.template,
            image_url=profile.image_url,
            image_sha256=profile.image_sha256,
            target_disk=profile.target_disk,
            legacy_anaconda=profile.legacy_anaconda,
            root_password_hash=profile.root_password_hash or LOCKED_ROOT_HASH,
            ssh_keys=_ssh_keys(profile, site),
        ),
    )


def _ssh_keys(profile: OSProfile, site: Site) -> tuple[str, ...]:
    """The profile's keys, plus the site's login key so the SSH verification can log in."""
    keys = [k.strip() for k in profile.ssh_authorized_keys.splitlines() if k.strip()]
    site_key = login_public_key(site.pk)
    if site_key and site_key.strip() not in keys:
        keys.append(site_key.strip())
    return tuple(keys)


@dataclass(frozen=True)
class PlannedStep:
    kind: str  # a key of installs/stepkinds.py KINDS
    task: str = ""  # agent steps: the agent's task kind
    params: dict = field(default_factory=dict)


def plan_steps(plan: Plan) -> list[PlannedStep]:
    """The ordered steps of a plan: the step kinds its method has, in the table's order, an agent
    step for each of the agent's tasks."""
    steps = []
    for spec in KINDS.values():
        if not spec.planned_for(plan.profile.method):
            continue
        if spec.mover == Mover.AGENT:
            steps += [PlannedStep(spec.kind, task, params) for task, params in agent_tasks(plan)]
        else:
            steps.append(PlannedStep(spec.kind))
    return steps


def agent_tasks(plan: Plan) -> list[tuple[str, dict]]:
    """The agent's work for an image install. A blank disk means the machine's first disk,
    resolved from the facts the agent registers with."""
    profile, machine = plan.profile, plan.machine
    disk = profile.target_disk
    network = {"mac": machine.mac, "style": "netplan"}
    if machine.ip:
        network.update(address=machine.ip, prefix=machine.prefix, gateway=machine.gateway, dns=list(machine.dns))
    tasks = [
        ("wipe_disks", {"disks": [disk]}),
        (
            "write_image",
            {"url": profile.image_url, "sha256": profile.image_sha256, "disk": disk, "compression": "auto"},
        ),
        ("configure_network", network),
        ("set_hostname", {"hostname": machine.fqdn}),
    ]
    if profile.ssh_keys:
        tasks.append(("ssh_keys", {"user": "root", "keys": list(profile.ssh_keys)}))
    # Last: the installed OS calls back at its first boot, which is what the verify step waits for.
    tasks.append(("first_boot_callback", {}))
    return tasks
