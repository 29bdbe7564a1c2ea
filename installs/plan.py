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

from access.models import SiteCA
from access.service import login_public_key
from inventory.models import BMC, InstallMethod, Machine, OSProfile, Site

from . import hints
from . import workflow as wf
from .taskkinds import TASKS, Category

# The shape to_json writes; from_json reads this one and every one before it. Version 2 added the
# workflow (frozen, with its scripts' bodies); a version 1 plan ran the stock workflow of its method.
PLAN_VERSION = 2

# The root password when a profile sets none: a crypt string no password can match, so root
# can log in only with the profile's SSH keys.
LOCKED_ROOT_HASH = "$6$locked$*"


@dataclass(frozen=True)
class SitePlan:
    slug: str
    tftp_root: str
    base_url: str
    # The site's SSH user CA keys (current first, then the previous one during a rotation), for the
    # machine's TrustedUserCAKeys; empty in plans stored before sessions had certificates.
    ssh_ca_keys: tuple[str, ...] = ()


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
    workflow: wf.Workflow | None = None  # None: the stock workflow of the profile's method
    # Installer methods: the disks of the workflow's storage layout, resolved when planned (an image install's
    # agent tasks resolve theirs from the facts the agent registers with).
    storage_devices: tuple[str, ...] = ()

    @property
    def flow(self) -> wf.Workflow:
        """The workflow this install runs."""
        return self.workflow or wf.stock(self.profile.method)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "site": {**dataclasses.asdict(self.site), "ssh_ca_keys": list(self.site.ssh_ca_keys)},
            "machine": {**dataclasses.asdict(self.machine), "dns": list(self.machine.dns)},
            "bmc": dataclasses.asdict(self.bmc),
            "profile": {**dataclasses.asdict(self.profile), "ssh_keys": list(self.profile.ssh_keys)},
            "step_count": self.step_count,
            "workflow": self.workflow.to_json() if self.workflow else None,
            "storage_devices": list(self.storage_devices),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        version = data.get("version", 1)
        if version not in (1, PLAN_VERSION):
            raise ValueError(f"plan version {version!r}: this release reads versions 1 to {PLAN_VERSION}")
        try:
            machine, profile = data["machine"], data["profile"]
            flow = data.get("workflow")
            return cls(
                site=SitePlan(**{**data["site"], "ssh_ca_keys": tuple(data["site"].get("ssh_ca_keys") or ())}),
                machine=MachinePlan(**{**machine, "dns": tuple(machine["dns"])}),
                bmc=BmcPlan(**data["bmc"]),
                profile=ProfilePlan(**{**profile, "ssh_keys": tuple(profile["ssh_keys"])}),
                step_count=data.get("step_count", 0),
                version=PLAN_VERSION,
                workflow=wf.Workflow.from_json(flow) if flow else None,
                storage_devices=tuple(data.get("storage_devices") or ()),
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


def _capability_problems(machine: Machine, workflow: wf.Workflow) -> list[str]:
    """Each task of ``workflow`` the machine's out-of-band driver cannot do, once per missing capability."""
    from inventory import power

    have = power.capabilities_of(machine)
    problems = {}
    for _, stage, task in workflow.tasks():
        kind = TASKS.get(task.task)
        if kind is None:
            continue
        for capability in sorted(kind.capabilities_for(task.params) - have):
            problems.setdefault(
                capability,
                f"{power.refusal(machine, capability)} Workflow {workflow.name} needs it for "
                + (f"“{task.name}” ({task.task})" if task.name and task.name != task.task else task.task)
                + f" in stage “{stage.name}”.",
            )
    return list(problems.values())


def build_plan(
    machine: Machine, profile: OSProfile, *, for_install: bool = True, workflow: wf.Workflow | None = None
) -> Plan:
    """The plan for installing ``profile`` on ``machine``, running ``workflow`` (None: the stock workflow of its
    method; installs/library.py plan_for gives the profile's own). ``for_install=False`` (previews) does not
    insist on what only a real install needs: a BMC and an image to write."""
    problems = []
    if workflow is None:
        workflow = wf.stock(profile.method)
    storage_devices: tuple[str, ...] = ()
    if workflow is not None and workflow.storage and profile.method != InstallMethod.IMAGE:
        try:
            storage_devices = tuple(storage_disks(workflow.storage, machine.facts or {}, profile.target_disk))
        except hints.HintError as exc:
            problems.append(f"{machine.hostname}: the workflow's storage disks: {exc}")
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
    if bmc is not None and workflow is not None:
        problems.extend(_capability_problems(machine, workflow))
    writes_image = workflow is None or workflow.purpose == "deploy"
    if (
        for_install
        and writes_image
        and profile.method == InstallMethod.IMAGE
        and not (profile.image_url and profile.image_sha256)
    ):
        problems.append(f"Profile {profile.name} has no image URL and SHA-256 to write.")
    if problems:
        raise PlanError(problems)
    site = machine.rack.site
    short, _, fqdn_domain = machine.hostname.partition(".")
    return Plan(
        site=SitePlan(
            slug=site.slug, tftp_root=site.tftp_root, base_url=site.base_url, ssh_ca_keys=_ca_keys(site, for_install)
        ),
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
        workflow=workflow,
        storage_devices=storage_devices,
    )


def storage_disks(storage: wf.Storage | None, facts: dict, target_disk: str = "") -> list[str]:
    """The /dev paths a storage layout's ``disks`` choose on a machine with ``facts``. Without facts, only
    literal paths resolve. Raises hints.HintError naming what failed and listing the machine's disks."""
    if storage is None or storage.disks is None:
        return [target_disk] if target_disk else first_disk(facts)
    return resolve_disks(storage.disks, facts, "storage.disks")


def first_disk(facts: dict) -> list[str]:
    disks = [d["path"] for d in facts.get("disks", []) if d.get("path")]
    if not disks:
        raise hints.HintError("no disk named and the machine has reported none: give a /dev path")
    return disks[:1]


def resolve_disks(value: Any, facts: dict, where: str) -> list[str]:
    """Paths, hints or a list of both -> /dev paths, in order, without repeats."""
    items = value if isinstance(value, list) else [value]
    disks = facts.get("disks", [])
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            paths = [item] if item else first_disk(facts)
        elif isinstance(item, dict):
            paths = hints.literal_paths(item)
            if paths is None:
                if not disks:
                    raise hints.HintError(
                        f"{where}: the machine has reported no hardware facts yet, so a hint cannot choose its "
                        "disks: name them by /dev path"
                    )
                paths = hints.resolve(item, disks, where=where)
        else:
            raise hints.HintError(f"{where}: {item!r} is neither a /dev path nor a hint")
        out += [p for p in paths if p not in out]
    return out


def _ssh_keys(profile: OSProfile, site: Site) -> tuple[str, ...]:
    """The profile's keys, plus the site's login key so the SSH verification can log in."""
    keys = [k.strip() for k in profile.ssh_authorized_keys.splitlines() if k.strip()]
    site_key = login_public_key(site.pk)
    if site_key and site_key.strip() not in keys:
        keys.append(site_key.strip())
    return tuple(keys)


def _ca_keys(site: Site, for_install: bool) -> tuple[str, ...]:
    """The CA keys the installed machine trusts for session certificates. An install makes the site's CA
    when it has none yet (every machine installed from now on trusts it); a preview only shows what exists."""
    authority = SiteCA.for_site(site) if for_install else SiteCA.objects.filter(site=site).first()
    return tuple(authority.trusted_keys()) if authority else ()


@dataclass(frozen=True)
class PlannedStep:
    kind: str  # a key of installs/stepkinds.py KINDS
    task: str = ""  # agent steps: the agent's task kind
    params: dict = field(default_factory=dict)
    stage: int = 0
    stage_name: str = ""
    parallel: bool = False
    name: str = ""
    policy: dict = field(default_factory=dict)


def plan_steps(plan: Plan) -> list[PlannedStep]:
    """The ordered steps of a plan: one per task of its workflow, stage by stage. Agent tasks get the
    params the plan gives (the image, the network, the keys) under those the workflow wrote; disk hints and
    templates are resolved when the agent asks for the task, from the facts it registered with."""
    steps = []
    flow = plan.flow
    for index, stage, task in flow.tasks():
        kind = task.kind
        if kind.name == "ssh_keys" and not plan.profile.ssh_keys and not plan.site.ssh_ca_keys:
            continue  # no keys to install: nothing for the agent to do
        params = dict(task.params)
        if kind.category == Category.AGENT:
            if kind.name == "wipe_disks" and "disks" not in params and flow.storage is None:
                # The default disk is the one the image goes to: the agent refuses an image that cannot fit
                # before it wipes anything.
                params.setdefault("image_url", plan.profile.image_url)
            params = {**agent_defaults(plan, flow, kind.name), **params}
        policy = {
            "timeout_s": task.timeout_s,
            "retries": task.retries,
            "backoff_s": task.backoff_s,
            "on_failure": task.on_failure,
            "destructive": kind.destructive,
            "safe_to_repeat": kind.safe_to_repeat,
        }
        if kind.name == "run_script":
            # The check let a script be retried only when it declared itself safe to repeat.
            policy["safe_to_repeat"] = task.retries > 0
        steps.append(
            PlannedStep(
                kind=kind.step_kind,
                task=kind.name if kind.category == Category.AGENT else "",
                params=params,
                stage=index,
                stage_name=stage.name,
                parallel=stage.parallel,
                name=task.name,
                policy=policy,
            )
        )
    return steps


def agent_defaults(plan: Plan, flow: wf.Workflow, task: str) -> dict:
    """The params an agent task gets from the plan when the workflow leaves them out. A blank disk means the
    machine's first disk, resolved from the facts the agent registers with."""
    profile, machine = plan.profile, plan.machine
    storage = flow.storage
    raid = storage is not None and storage.layout != "single"
    disks: Any = storage.disks if storage and storage.disks is not None else [profile.target_disk]
    disk = "/dev/md0" if raid else (disks if isinstance(disks, dict) else disks[0] if disks else "")
    if task == "wipe_disks":
        return {"disks": disks}
    if task == "raid":
        return {"device": "/dev/md0", "level": {"raid1": 1, "raid10": 10}.get(storage.layout if storage else "", 1),
                "members": disks, "metadata": "1.0"}  # fmt: skip
    if task == "bootloader":
        return {"device": "/dev/md0", "members": disks}
    if task == "write_image":
        return {"url": profile.image_url, "sha256": profile.image_sha256, "disk": disk, "compression": "auto"}
    if task == "grow_root":
        return {"disk": disk}
    if task == "configure_network":
        network = {"mac": machine.mac, "style": "netplan"}
        if machine.ip:
            network.update(address=machine.ip, prefix=machine.prefix, gateway=machine.gateway, dns=list(machine.dns))
        return network
    if task == "set_hostname":
        return {"hostname": machine.fqdn}
    if task == "ssh_keys":
        return {"user": "root", "keys": list(profile.ssh_keys), "ca_keys": list(plan.site.ssh_ca_keys)}
    if task == "commission":
        return {"lldp_s": 30}
    if task == "create_bmc_user":
        return {"username": "provisioner"}
    if task == "erase_disks":
        return {"disks": {"all": True}, "method": "auto", "verify": True}
    return {}
