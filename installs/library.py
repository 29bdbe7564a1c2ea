"""The workflow and script library: saving a version (checked first, audited), and what a profile's installs
will run, frozen with the scripts it calls.

Every path that saves a workflow or a script comes here: the admin, the REST API and ``manage.py workflow``.
A save whose document did not change keeps the current version; a changed one becomes the next version.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.service import Actor, record
from core.text import a
from inventory import lifecycle
from inventory.editing import EditRefused
from inventory.models import OSProfile

from . import stock_scripts
from . import workflow as wf
from .models import ACTIVE_STATES, Install, Script, Workflow
from .plan import Plan, PlanError, build_plan


class DbLibrary:
    """What documents refer to, from the database (installs/workflow.py Library)."""

    def script(self, ref: str) -> dict | None:
        name, _, version = ref.partition("@")
        if stock_scripts.is_stock(name):
            return stock_scripts.get(name) if version in ("", "0") else None
        rows = Script.objects.filter(name=name)
        if version:
            if not version.isdigit():
                return None
            row = rows.filter(version=int(version)).first()
        else:
            row = rows.order_by("-version").first()
        if row is None:
            return None
        return {
            "name": row.name,
            "version": row.version,
            "body": row.body,
            "timeout_s": row.timeout_s,
            "safe_to_repeat": row.safe_to_repeat,
        }

    def workflow_text(self, name: str) -> str | None:
        if wf.is_stock(name):
            return wf.stock_text_named(name)
        row = Workflow.latest(name)
        return row.document if row else None


def check(text: str) -> wf.Workflow:
    return wf.check(text, DbLibrary())


@transaction.atomic
def save_workflow(text: str, actor: Actor) -> tuple[Workflow, bool]:
    """Check and store a workflow document. Returns (the row, whether it is a new version)."""
    checked = check(text)
    if wf.is_stock(checked.name):
        raise wf.WorkflowInvalid([f"line 1: {checked.name} is the stock workflow's name; choose another"])
    current = Workflow.objects.select_for_update().filter(name=checked.name).order_by("-version").first()
    if current is not None and current.document == text:
        return current, False
    row = Workflow.objects.create(
        name=checked.name,
        version=current.version + 1 if current else 1,
        description=checked.description[:255],
        document=text,
        created_by_label=actor.label,
    )
    record(actor, "workflow.save", row, {"name": row.name, "version": row.version})
    return row, True


@transaction.atomic(durable=True)
def delete_workflow(name: str, actor: Actor) -> list[int]:
    """Delete every version of a workflow of the library; the versions deleted (none: no such workflow).
    EditRefused while anything would still run it: a stock workflow (part of provisioner), a profile naming it,
    an install not finished running it, another workflow's latest version including it. A finished install
    keeps its plan, with the workflow frozen in, so its history stays readable; the audit entry keeps the
    versions deleted."""
    if wf.is_stock(name):
        raise EditRefused([f"{name} is a stock workflow, part of provisioner: it cannot be deleted."])
    rows = list(Workflow.objects.select_for_update().filter(name=name).order_by("version"))
    if not rows:
        return []
    problems = []
    profiles = list(OSProfile.objects.filter(workflow=name).values_list("name", flat=True))
    if profiles:
        problems.append(f"Profile(s) {', '.join(profiles)} run workflow {name}: choose another workflow for them.")
    running = Install.objects.filter(workflow=name, state__in=ACTIVE_STATES).count()
    if running:
        problems.append(f"{running} install(s) not finished run workflow {name}.")
    include = re.compile(rf"include:\s*[\"']?{re.escape(name)}[\"']?\s*$", re.M)
    including = sorted(w.name for w in Workflow.objects.order_by("name", "-version").distinct("name")
                       if w.name != name and include.search(w.document))  # fmt: skip
    if including:
        problems.append(f"Workflow(s) {', '.join(including)} include workflow {name}.")
    if problems:
        raise EditRefused(problems)
    versions = [row.version for row in rows]
    details = {"name": name, "versions": versions, "description": rows[-1].description}
    record(actor, "workflow.delete", None, details, object_label=f"workflow {name}")
    Workflow.objects.filter(name=name).delete()
    return versions


@transaction.atomic
def save_script(
    name: str, body: str, actor: Actor, *, description: str = "", timeout_s: int = 600, safe_to_repeat: bool = False
) -> tuple[Script, bool]:
    """Store a script; a changed body or setting is a new version. Raises ValidationError naming the field."""
    candidate = Script(
        name=name, body=body, description=description, timeout_s=timeout_s, safe_to_repeat=safe_to_repeat
    )
    if stock_scripts.is_stock(name):
        raise ValidationError({"name": f"{stock_scripts.PREFIX}… names belong to the stock scripts; choose another"})
    candidate.full_clean(exclude=["version"])
    current = Script.objects.select_for_update().filter(name=name).order_by("-version").first()
    same = ("body", "description", "timeout_s", "safe_to_repeat")
    if current is not None and all(getattr(current, f) == getattr(candidate, f) for f in same):
        return current, False
    candidate.version = current.version + 1 if current else 1
    candidate.created_by_label = actor.label
    candidate.save()
    record(actor, "script.save", candidate, {"name": name, "version": candidate.version})
    return candidate, True


def for_profile(profile: OSProfile) -> wf.Workflow:
    """The workflow installs of ``profile`` run, checked again now (a script it calls may have gone), its
    version recorded, its scripts resolved to the exact versions. Raises WorkflowInvalid."""
    if not profile.workflow:
        return wf.stock(profile.method)
    row = Workflow.latest(profile.workflow)
    if row is None:
        if wf.is_stock(profile.workflow):
            stock = wf.check(wf.stock_text_named(profile.workflow))
            if profile.method not in stock.methods:  # stock-image named by an installer profile, or the reverse
                serves = ", ".join(stock.methods)
                raise wf.WorkflowInvalid(
                    [f"workflow {profile.workflow} serves {serves} installs; {profile.name} is {profile.method}"]
                )
            return stock
        raise wf.WorkflowInvalid([f"profile {profile.name} names the workflow {profile.workflow!r}: there is none"])
    checked = check(row.document)
    if checked.methods and profile.method not in checked.methods:
        serves = ", ".join(checked.methods)
        raise wf.WorkflowInvalid([f"workflow {row.name} serves {serves} installs; {profile.name} is {profile.method}"])
    return dataclasses.replace(freeze_scripts(checked), version=row.version)


def freeze_scripts(checked: wf.Workflow) -> wf.Workflow:
    """Each run_script task carries its script's body and exact version, so a later edit cannot change an
    install already planned."""
    library = DbLibrary()
    stages = []
    for stage in checked.stages:
        tasks = []
        for task in stage.tasks:
            if task.task == "run_script" and "body" not in task.params:
                script = library.script(str(task.params["script"]))
                if script is None:
                    raise wf.WorkflowInvalid([f"line {task.line}: no script {task.params['script']!r} in the library"])
                params = {
                    "script": f"{script['name']}@{script['version']}",
                    "body": script["body"],
                    "timeout_s": task.params.get("timeout", script["timeout_s"]),
                }
                if "args" in task.params:
                    params["args"] = list(task.params["args"])
                task = dataclasses.replace(task, params=params)
            tasks.append(task)
        stages.append(dataclasses.replace(stage, tasks=tuple(tasks)))
    return dataclasses.replace(checked, stages=tuple(stages))


# How an install request may ask its machines to boot, whatever the profile's workflow does: blank keeps the
# profile's; the others swap a stock workflow for its twin (a workflow of the library is never rewritten).
BOOTS = {
    "": "as the profile's workflow says",
    "network": "from the network (PXE)",
    "virtual-media": "from virtual media (the BMC attaches an ISO)",
}
_STOCK_BY_BOOT = {
    ("network", True): "stock-image",
    ("network", False): "stock-installer",
    ("virtual-media", True): "stock-image-virtual-media",
    ("virtual-media", False): "stock-installer-virtual-media",
}


def boots_by_media(flow: wf.Workflow) -> bool:
    return any(task.task == "insert_media" for _, _, task in flow.tasks())


def profile_flow(profile: OSProfile, boot: str = "") -> wf.Workflow:
    """for_profile, its refusal as a PlanError: what an install request says when the workflow cannot run.
    ``boot`` (a key of BOOTS) asks for a network or a virtual media boot: a profile running a stock workflow
    gets the stock one that boots so; a profile with a workflow of its own must already boot so."""
    if boot not in BOOTS:
        raise PlanError([f"boot: {boot!r} is not one of {', '.join(b for b in BOOTS if b)} (or blank)"])
    try:
        flow = for_profile(profile)
    except wf.WorkflowInvalid as exc:
        raise PlanError([f"Profile {profile.name}'s workflow: {m}" for m in exc.messages]) from None
    if not boot or boots_by_media(flow) == (boot == "virtual-media"):
        return flow
    if not wf.is_stock(flow.name):
        how = "inserts virtual media" if boots_by_media(flow) else "boots from the network"
        raise PlanError(
            [
                f"Profile {profile.name} runs the workflow {flow.name}, which {how}: it cannot boot {BOOTS[boot]}. "
                "Install without choosing the boot, or give the profile a workflow that boots so."
            ]
        )
    return wf.check(wf.stock_text_named(_STOCK_BY_BOOT[(boot, profile.method == "image")]))


def plan_for(machine, profile: OSProfile, *, for_install: bool = True, flow: wf.Workflow | None = None) -> Plan:
    """The plan for installing ``profile`` on ``machine`` with the profile's workflow (``flow``, when the
    caller already resolved it for several machines). Raises PlanError."""
    return build_plan(machine, profile, for_install=for_install, workflow=flow or profile_flow(profile))


@dataclass(frozen=True)
class Operation:
    """What an install request does: deploy a profile, or commission, test or release a machine by running a
    workflow of that purpose on its site's memory OS. installs/operations.py is the public way to ask."""

    purpose: str  # installs.models.Purpose; also the lifecycle action's name
    profile: OSProfile | None = None  # deploy's
    workflow: str = ""  # the workflow a commission, test or release runs; blank: its stock one
    cpu_burn_s: int | None = None  # test: the stock CPU burn script's duration
    nic_speed_mbps: int | None = None  # test: the NIC link speed the stock NIC test expects

    @classmethod
    def deploy(cls, profile: OSProfile) -> Operation:
        return cls("deploy", profile)

    @property
    def action(self) -> str:
        return self.purpose

    @property
    def status(self) -> str:
        """The machine's lifecycle status while the operation runs."""
        return lifecycle.ACTIONS[self.action].to

    def profile_for(self, machine) -> OSProfile:
        return self.profile if self.purpose == "deploy" else machine.rack.site.memory_os

    def flow(self, boot: str = "") -> wf.Workflow:
        """The checked workflow, its scripts frozen. Raises PlanError in words."""
        if self.purpose == "deploy":
            flow = profile_flow(self.profile, boot)
            if flow.purpose != "deploy":
                raise PlanError([f"Profile {self.profile.name} names {flow.name}, a {flow.purpose} workflow."])
            return flow
        if boot not in ("", "network"):
            raise PlanError(
                [f"{a(self.purpose, capital=True)} boots the memory OS from the network; boot {boot!r} is not offered."]
            )
        name = self.workflow or wf.STOCK_FOR_PURPOSE[self.purpose]
        try:
            if wf.is_stock(name):
                flow = freeze_scripts(wf.check(wf.stock_text_named(name), DbLibrary()))
            else:
                row = Workflow.latest(name)
                if row is None:
                    raise PlanError([f"There is no workflow {name!r} in the library."])
                flow = dataclasses.replace(freeze_scripts(check(row.document)), version=row.version)
        except wf.WorkflowInvalid as exc:
            raise PlanError([f"Workflow {name}: {m}" for m in exc.messages]) from None
        if flow.purpose != self.purpose:
            raise PlanError([f"Workflow {name} is a {flow.purpose} workflow, not a {self.purpose} one."])
        return self._with_options(flow)

    def _with_options(self, flow: wf.Workflow) -> wf.Workflow:
        """The request's CPU burn duration and expected NIC speed, as the first argument of those stock scripts."""
        given = {"stock-cpu-burn": self.cpu_burn_s, "stock-nic-speed": self.nic_speed_mbps}
        if all(v is None for v in given.values()):
            return flow
        stages = []
        for stage in flow.stages:
            tasks = []
            for task in stage.tasks:
                script = str(task.params.get("script", "")).partition("@")[0]
                if task.task == "run_script" and given.get(script) is not None:
                    args = [str(int(given[script])), *list(task.params.get("args") or [])[1:]]
                    task = dataclasses.replace(task, params={**task.params, "args": args})
                tasks.append(task)
            stages.append(dataclasses.replace(stage, tasks=tuple(tasks)))
        return dataclasses.replace(flow, stages=tuple(stages))

    def plan(self, machine, flow: wf.Workflow) -> Plan:
        if self.purpose == "deploy":
            return build_plan(machine, self.profile, workflow=flow)
        site = machine.rack.site if machine.rack_id else None
        if site is not None and site.memory_os is None:
            raise PlanError(
                [f"{machine.hostname}: site {site.slug} has no memory OS profile, which a {self.purpose} boots; "
                 "choose one in the site's settings."]
            )  # fmt: skip
        if site is None:
            raise PlanError([f"{machine.hostname} is not in a rack, so provisioner does not know its site."])
        return build_plan(machine, site.memory_os, workflow=flow)


def check_profile(profile: OSProfile) -> None:
    """OSProfile.clean's check: the workflow it names exists and serves its method."""
    if not profile.workflow:
        return
    try:
        for_profile(profile)
    except wf.WorkflowInvalid as exc:
        raise ValidationError({"workflow": exc.messages}) from None
