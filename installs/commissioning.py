"""The control plane's side of the lifecycle's agent tasks: what commissioning's facts become (a facts version
of the machine), the in-band BMC user (its password handed to the agent with the task, never kept in the step),
and the erase report of a release, each as words in the install's log."""

from __future__ import annotations

import json
import secrets

from audit.service import Actor, record
from inventory import facts as machine_facts
from inventory.models import BMC, Machine

from .models import Install, Step

# Agent tasks whose output is a JSON report this module reads; their raw output is not put in the log.
RESULT_TASKS = frozenset({"commission", "create_bmc_user", "erase_disks"})
# IPMI 2.0 passwords are at most 20 bytes.
BMC_PASSWORD_LENGTH = 20


class ResultUnusable(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def skip_reason(install: Install, step: Step) -> str:
    """Why a pending agent step has nothing to do on this machine ("" when it runs)."""
    if step.task != "create_bmc_user":
        return ""
    site = install.machine.rack.site if install.machine.rack_id else None
    if site is None or not site.create_bmc_user:
        return "the site does not create BMC users in-band"
    if not BMC.objects.filter(machine_id=install.machine_id).exists():
        return "the machine has no BMC record to keep the user's credentials in"
    return ""


def secret_params(install: Install, step: Step) -> dict:
    """Params the agent gets for ``step`` that are never stored with it: the new BMC user's password."""
    if step.task != "create_bmc_user":
        return {}
    bmc = BMC.objects.select_for_update().get(machine_id=install.machine_id)
    if not bmc.has_new_user_password:
        # Letters and digits only: every BMC accepts them, and ipmitool takes them without quoting.
        alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        bmc.set_new_user_password("".join(secrets.choice(alphabet) for _ in range(BMC_PASSWORD_LENGTH)))
        bmc.save(update_fields=["new_user_password_ciphertext"])
    return {"password": bmc.get_new_user_password()}


def _json(output: str, what: str):
    try:
        return json.loads(output)
    except ValueError:
        raise ResultUnusable("ReportUnreadable", f"The agent's {what} report is not JSON: {output[:200]!r}") from None


def take_result(install: Install, step: Step, output: str, actor: Actor) -> str | None:
    """Act on a finished task's report; the words for the install's log, or None when the task has no report."""
    if step.task == "commission":
        return _commissioned(install, _json(output, "hardware facts"), actor)
    if step.task == "create_bmc_user":
        return _bmc_user_made(install, step, _json(output, "BMC user"), actor)
    if step.task == "erase_disks":
        return _erased(_json(output, "erase"))
    return None


def _gib(value) -> str:
    return f"{value / 2**30:.0f} GiB" if isinstance(value, int) else "unknown memory"


def _commissioned(install: Install, facts, actor: Actor) -> str:
    if not isinstance(facts, dict):
        raise ResultUnusable("ReportUnreadable", "The agent's hardware facts are not an object.")
    machine = Machine.objects.select_for_update().get(pk=install.machine_id)
    version = machine_facts.store_version(machine, facts, f"commissioning (install {install.pk})", actor)
    disks = facts.get("disks") or []
    nics = facts.get("nics") or []
    serials = ", ".join(str(d.get("serial") or d.get("name")) for d in disks if isinstance(d, dict))
    heard = [n for n in nics if isinstance(n, dict) and n.get("lldp")]
    switch = (
        "; ".join(
            f"{n['mac']} on {n['lldp'].get('system_name') or '?'} port {n['lldp'].get('port_id') or '?'}" for n in heard
        )  # fmt: skip
        or "no LLDP neighbour heard"
    )
    since = f"{len(version.changes)} change(s) since version {version.version - 1}" if version.version > 1 else "first"
    return (
        f"Hardware facts version {version.version} stored ({since}): {machine.cpu_model or 'CPU'} "
        f"{machine.cpu_cores or '?'} cores, {_gib(machine.memory_bytes)}, {len(disks)} disk(s) ({serials or 'none'}), "
        f"{len(nics)} NIC(s), {switch}."
    )


def _bmc_user_made(install: Install, step: Step, report, actor: Actor) -> str:
    if not isinstance(report, dict):
        raise ResultUnusable("ReportUnreadable", "The agent's BMC user report is not an object.")
    bmc = BMC.objects.select_for_update().get(machine_id=install.machine_id)
    if not bmc.has_new_user_password:
        raise ResultUnusable("BmcUserUnknown", "The agent reports a BMC user this install never handed out.")
    username = str(step.params.get("username") or "provisioner")[:64]
    bmc.username = username
    bmc.set_password(bmc.get_new_user_password())
    bmc.new_user_password_ciphertext = ""
    bmc.save(update_fields=["username", "password_ciphertext", "new_user_password_ciphertext"])
    details = {"username": username, "user_id": report.get("user_id"), "channel": report.get("channel")}
    record(actor, "bmc.user_created", install.machine, details)
    seen = f"; the host sees the BMC at {report['address']}" if report.get("address") else ""
    return (
        f"BMC user {username} created in-band (slot {report.get('user_id', '?')}, channel "
        f"{report.get('channel', '?')}); provisioner now logs in to the BMC with it{seen}."
    )


def _erased(report) -> str:
    disks = report.get("disks") if isinstance(report, dict) else report
    if not isinstance(disks, list):
        raise ResultUnusable("ReportUnreadable", "The agent's erase report has no list of disks.")
    lines = []
    for disk in disks:
        if not isinstance(disk, dict):
            continue
        why = f" (not {disk['fallback']})" if disk.get("fallback") else ""
        verified = "verified" if disk.get("verified") else "NOT verified"
        lines.append(
            f"{disk.get('path', '?')} (serial {disk.get('serial') or '?'}): {disk.get('method', '?')}{why}, "
            f"{verified}, {disk.get('seconds', '?')} s"
        )
    return "Erased: " + ("; ".join(lines) if lines else "no disks")
