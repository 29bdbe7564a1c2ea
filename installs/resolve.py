"""An agent task's params as the agent receives them: the workflow's templates rendered and its disk hints
resolved to /dev paths, from the plan and the facts the machine registered with. The agent hand-out
(installs/callbacks.py) and the machine page's workflow preview (installs/render.py) both come here."""

from __future__ import annotations

from . import hints, workflow
from .plan import Plan, resolve_disks, storage_disks


class ParamsUnusable(Exception):
    """A task's params cannot be resolved on this machine (a hint matches no disk, a template fails)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


# Params naming disks, and whether they take several.
DISK_PARAMS = {"disk": False, "disks": True, "members": True}


def param_context(plan: Plan, hostname: str, facts: dict, storage_devices: list[str]) -> dict:
    """What a workflow's param templates render from: the plan and the machine's registered facts."""
    machine = plan.machine
    return {
        "machine": {
            "hostname": hostname, "short": machine.short, "domain": machine.domain, "fqdn": machine.fqdn,
            "mac": machine.mac, "ip": machine.ip, "prefix": machine.prefix, "gateway": machine.gateway,
            "dns": list(machine.dns),
        },
        "site": {"slug": plan.site.slug},
        "profile": {"name": plan.profile.name, "method": plan.profile.method, "image_url": plan.profile.image_url},
        "facts": {k: facts.get(k) for k in ("cpus", "memory_bytes", "disks", "nics", "efi", "dmi") if k in facts},
        "storage": {
            "layout": plan.flow.storage.layout if plan.flow.storage else "single",
            "devices": storage_devices,
            "array": "/dev/md0",
        },
    }  # fmt: skip


def task_params(plan: Plan, hostname: str, facts: dict, task: str, params: dict) -> dict:
    """Templates rendered, disk hints resolved to /dev paths (a blank disk: the machine's first). Raises
    ParamsUnusable saying what and, for disks, listing the machine's disks."""
    flow = plan.flow
    try:
        storage_devices = storage_disks(flow.storage, facts, plan.profile.target_disk) if facts else []
        params = workflow.render_params(dict(params), param_context(plan, hostname, facts, storage_devices))
        for name, many in DISK_PARAMS.items():
            if name in params:
                paths = resolve_disks(params[name], facts, f"{task}.{name}")
                params[name] = paths if many else paths[0]
    except hints.HintError as exc:
        raise ParamsUnusable("DiskHintUnmatched", str(exc)) from None
    except workflow.ParamRenderError as exc:
        raise ParamsUnusable("TemplateError", f"the {task.replace('_', ' ')} params: {exc.reason}") from None
    if task == "run_script":
        resolved = {"script": params.get("body", ""), "name": params.get("script", ""),
                    "timeout_s": params.get("timeout_s", 600)}  # fmt: skip
        if params.get("args"):
            resolved["args"] = [str(arg) for arg in params["args"]]
        params = resolved
    return params
