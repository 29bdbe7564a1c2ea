"""What a machine receives: its boot script and installer answer files, rendered from an install's
frozen plan (or, for previews, from a plan built on the spot with placeholder tokens). Boot files carry
the boot credential only; answer files carry the callback token too (installs/tokens.py)."""

from __future__ import annotations

import json

from provisioner import pxe
from provisioner.pxe.stock import META_DATA_TEMPLATE

from . import resolve, tokens
from .plan import Plan, plan_steps

PREVIEW_TOKEN = "PREVIEW-BOOT-CREDENTIAL-not-real"
PREVIEW_CALLBACK_TOKEN = "PREVIEW-CALLBACK-TOKEN-not-real"

# Boot-file previews: every profile has each of them, whatever its method.
BOOT_PREVIEWS = {"pxelinux": pxe.Loader.PXELINUX, "grub": pxe.Loader.GRUB, "ipxe": pxe.Loader.IPXE}


def boot_token(install) -> str:
    return tokens.boot_token(install.token_nonce)


def cmdline(plan: Plan, token: str) -> str:
    profile, machine = plan.profile, plan.machine
    return pxe.kernel_cmdline(
        profile.method,
        mac=machine.mac,
        base_url=plan.site.base_url,
        token=token,
        hostname=machine.short,
        domain=machine.domain,
        extra_args=profile.kernel_args,
        legacy_anaconda=profile.legacy_anaconda,
    )


def boot_entry(plan: Plan, token: str, loader: pxe.Loader) -> pxe.BootEntry:
    return pxe.BootEntry(
        mac=plan.machine.mac,
        kernel=plan.profile.kernel,
        initrd=plan.profile.initrd,
        cmdline=cmdline(plan, token),
        loader=loader,
    )


def boot_file(plan: Plan, token: str, loader: pxe.Loader) -> str:
    return pxe.render(boot_entry(plan, token, loader))


def storage(plan: Plan) -> pxe.Layout | None:
    """The disk layout the plan's answer file lays out: its workflow's storage, on the disks resolved when the
    install was planned. None (no storage in the workflow): install_context's single-disk default."""
    layout = plan.flow.storage
    if layout is None:
        return None
    devices = plan.storage_devices or (plan.profile.target_disk or "/dev/sda",)
    return pxe.Layout(
        layout.layout, tuple(devices), lvm=layout.lvm, filesystem=layout.filesystem, swap_mib=layout.swap_mib
    )


def context(plan: Plan, token: str, callback_token: str) -> dict:
    profile, machine = plan.profile, plan.machine
    network = None
    if machine.ip:
        network = pxe.StaticAddress(
            address=machine.ip,
            prefix=machine.prefix,
            gateway=machine.gateway,
            dns=machine.dns,
        )
    return pxe.install_context(
        hostname=machine.short,
        domain=machine.domain,
        mac=machine.mac,
        base_url=plan.site.base_url,
        token=token,
        callback_token=callback_token,
        disk=profile.target_disk or "/dev/sda",
        root_password_hash=profile.root_password_hash,
        ssh_keys=profile.ssh_keys,
        ssh_ca_keys=plan.site.ssh_ca_keys,
        network=network,
        storage=storage(plan),
    )


def serves(plan: Plan, name: str) -> bool:
    """Whether the plan's install method serves the answer file ``name``."""
    file = pxe.answer_file_named(name)
    return file is not None and file.method == plan.profile.method


def answer_file(plan: Plan, token: str, callback_token: str, name: str) -> str:
    """Render ``name`` (preseed.cfg, ks.cfg, user-data, meta-data): its own URLs carry the boot
    credential ``token``, its callbacks the ``callback_token``. Raises KeyError when the plan's method
    does not serve that file, pxe.TemplateError when the template is broken."""
    if not serves(plan, name):
        raise KeyError(name)
    values = context(plan, token, callback_token)
    if name == "meta-data":
        return pxe.render_template(META_DATA_TEMPLATE, values, template="meta-data")
    return pxe.render_template(plan.profile.template, values, template=f"profile {plan.profile.name}")


WORKFLOW_PREVIEW = "workflow"
PREVIEW_FILES = (WORKFLOW_PREVIEW, *BOOT_PREVIEWS, *(file.preview for file in pxe.ANSWER_FILES))


def previews_for(method: str) -> list[str]:
    """The previews a profile of ``method`` has: its workflow as this machine would run it, every boot file
    and its method's answer files."""
    return [WORKFLOW_PREVIEW, *BOOT_PREVIEWS, *(file.preview for file in pxe.answer_files(method))]


def workflow_preview(plan: Plan, hostname: str, facts: dict) -> str:
    """The workflow as this machine would run it: stage by stage, each agent task with the params the agent
    would get (disk hints resolved against the machine's last registered facts, templates rendered), or why
    they cannot be resolved."""
    flow = plan.flow
    version = f" v{flow.version}" if flow.version else ""
    lines = [f"# workflow {flow.name}{version} for {hostname} ({plan.profile.method})"]
    if not facts.get("disks"):
        lines.append("# no hardware facts registered yet: disk hints resolve when the agent registers")
    if flow.storage:
        where = ", ".join(plan.storage_devices) or "resolved by the agent's tasks"
        lines.append(f"# storage: {flow.storage.layout}{' on LVM' if flow.storage.lvm else ''}, disks: {where}")
    stage = None
    for step in plan_steps(plan):
        if step.stage != stage:
            stage = step.stage
            lines.append(f"\nstage {stage + 1}: {step.stage_name}{' (parallel)' if step.parallel else ''}")
        policy = step.policy
        notes = [f"retries {policy['retries']}"] if policy.get("retries") else []
        if policy.get("timeout_s"):
            notes.append(f"timeout {policy['timeout_s']} s")
        if policy.get("on_failure") == "continue":
            notes.append("on failure: continue")
        if policy.get("destructive"):
            notes.append("destructive")
        lines.append(f"  - {step.name}" + (f"  [{', '.join(notes)}]" if notes else ""))
        if step.task:
            try:
                params = step.params
                if facts.get("disks"):
                    params = resolve.task_params(plan, hostname, facts, step.task, step.params)
            except resolve.ParamsUnusable as exc:
                lines.append(f"      CANNOT RESOLVE ({exc.reason}): {exc.message}")
                continue
            if step.task == "run_script":
                body = str(params.get("script") or params.get("body") or "")
                params = {k: v for k, v in params.items() if k not in ("script", "body")} | {
                    "script_lines": len(body.splitlines())
                }
            lines.append(f"      params: {json.dumps(params, sort_keys=True)}")
        elif step.params:
            lines.append(f"      params: {json.dumps(step.params, sort_keys=True)}")
    return "\n".join(lines) + "\n"


def preview(plan: Plan, what: str, *, hostname: str = "", facts: dict | None = None) -> str:
    """What the machine would receive, with placeholder tokens, for `manage.py render` and the machine page.
    Raises KeyError when ``what`` is no preview or the plan's method does not serve that file."""
    if what == WORKFLOW_PREVIEW:
        return workflow_preview(plan, hostname or plan.machine.hostname, facts or {})
    if what in BOOT_PREVIEWS:
        return boot_file(plan, PREVIEW_TOKEN, BOOT_PREVIEWS[what])
    name = {file.preview: file.name for file in pxe.ANSWER_FILES}[what]
    return answer_file(plan, PREVIEW_TOKEN, PREVIEW_CALLBACK_TOKEN, name)
