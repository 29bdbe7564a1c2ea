"""Post-install verification and audited commands on machines, through their site's jump hosts.

Plain synchronous functions: the database is read and written in the caller's thread, and only the
SSH part runs on an event loop (its own thread when the caller already has a loop, e.g. under daphne).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterable
from dataclasses import dataclass

import asyncssh
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction

from accounts.roles import Role, has_role
from audit.service import Actor, record
from inventory.crypto import FieldDecryptError
from inventory.models import Machine

from . import checks, errors, keys, transport
from .checks import Check
from .models import HostKeySource, JumpHost, MachineHostKey, SiteLogin

__all__ = [
    "Check",
    "CommandResult",
    "access_problem",
    "can_run_commands",
    "login_public_key",
    "pin_host_key",
    "run_command",
    "verify_installed",
]


def connect_timeout_s() -> float:
    return float(settings.SSH_CONNECT_TIMEOUT_S)


def max_parallel() -> int:
    # Sessions opened at once through one site's bastion: OpenSSH's MaxStartups (default 10:30:100)
    # starts dropping unauthenticated connections at 10, and every target session is a forwarded one.
    return int(settings.SSH_MAX_PARALLEL)


# Enough for os-release, `ip -j addr` of a machine with dozens of VLAN interfaces, and lsblk.
VERIFY_MAX_OUTPUT = 256 * 1024


@dataclass(frozen=True)
class CommandResult:
    machine_id: int
    hostname: str
    exit_status: int | None  # None: never ran, cut off by the timeout, or killed by a signal
    output: str  # stdout and stderr interleaved, at most max_output bytes
    truncated: bool
    duration_s: float
    reason: str = ""  # CamelCase when it did not run to completion: CommandTimeout, BastionUnreachable, ...
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def can_run_commands(user) -> bool:
    """Whether a person may run commands on machines: technicians and admins; viewers may not."""

    return has_role(user, Role.TECHNICIAN)


def login_public_key(site_id: int) -> str | None:
    """The authorized_keys line an install adds for the site's login user, or None when the site has
    no login key yet."""
    login = SiteLogin.objects.filter(site_id=site_id).first()
    return login.public_key if login and login.has_private_key else None


def access_problem(machine_id: int) -> str | None:
    """Why provisioner cannot reach this machine over SSH (for skipping a step with the reason shown),
    or None when everything a connection needs is configured."""
    machine = _machines([machine_id])[machine_id]
    try:
        _route(machine, expected_ip=None, accept_new_host_key=True)
    except errors.AccessError as exc:
        return exc.message
    return None


def _run_async(make_coro):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ssh") as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


def _machines(machine_ids: Iterable[int]) -> dict[int, Machine]:
    ids = list(dict.fromkeys(machine_ids))
    found = {
        m.pk: m
        for m in Machine.objects.filter(pk__in=ids)
        .select_related("rack__site", "ssh_host_key")
        .prefetch_related("nics")
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise Machine.DoesNotExist(f"No machine with id {', '.join(map(str, missing))}.")
    return {i: found[i] for i in ids}


def _hops(site) -> list[transport.Endpoint]:
    hops = list(JumpHost.objects.filter(site=site).order_by("order"))
    if not hops:
        raise errors.AccessNotConfigured(f"Site {site.slug} has no jump host.")
    endpoints = []
    for hop in hops:
        hop.site = site  # alias reads the slug; no query per hop
        label = f"jump host {hop.alias} ({hop.address}:{hop.port})"
        if not hop.has_private_key:
            raise errors.AccessNotConfigured(f"{label} has no private key.", host=label)
        try:
            secret = hop.get_private_key()
            pins = tuple(hop.pinned_keys())
        except (FieldDecryptError, keys.BadKey) as exc:
            raise errors.AccessNotConfigured(f"{label}: {exc}", host=label) from None
        endpoints.append(transport.Endpoint(label, hop.address, hop.port, hop.username, secret, pins))
    return endpoints


def _route(
    machine: Machine, *, expected_ip: str | None, accept_new_host_key: bool
) -> tuple[list[transport.Endpoint], transport.Endpoint]:
    site = machine.rack.site if machine.rack_id else None
    if site is None:
        raise errors.AccessNotConfigured(f"{machine.hostname} is not in a rack, so it has no site and no jump host.")
    hops = _hops(site)
    login = SiteLogin.objects.filter(site=site).first()
    if login is None or not login.has_private_key:
        raise errors.AccessNotConfigured(f"Site {site.slug} has no machine login key (admin: site logins).")
    nic = machine.pxe_nic
    address = expected_ip or (nic.ip if nic else None)
    if not address:
        raise errors.AccessNotConfigured(f"{machine.hostname} has no IP address on its PXE NIC.")
    label = f"{machine.hostname} ({address}:{login.port})"
    pin = getattr(machine, "ssh_host_key", None)
    try:
        secret = login.get_private_key()
        pins = () if accept_new_host_key or pin is None else tuple(pin.pinned_keys())
    except (FieldDecryptError, keys.BadKey) as exc:
        raise errors.AccessNotConfigured(f"{label}: {exc}", host=label) from None
    target = transport.Endpoint(
        label, address, login.port, login.username, secret, pins, accept_new_host_key=accept_new_host_key
    )
    return hops, target


def session_route(machine: Machine) -> tuple[list[transport.Endpoint], transport.Endpoint]:
    """The jump hosts and the machine (its pinned host key required) for an interactive session; the target's
    credentials are the site login's until the session replaces them with its certificate. Raises AccessError."""
    hops, target = _route(machine, expected_ip=None, accept_new_host_key=False)
    if not target.pinned_host_keys:
        raise errors.TargetHostKeyUnknown(
            f"No host key is pinned for {machine.hostname}; an install's verification records it, or pin one "
            "(admin: machine host keys).",
            host=target.label,
        )
    return hops, target


def pin_host_key(machine: Machine, host_key: str, *, source: str, actor: Actor) -> MachineHostKey:
    """Pin ``host_key`` (known_hosts text) for the machine, replacing any earlier pin; audited."""
    new = keys.parse_host_keys(host_key)
    with transaction.atomic():
        current = MachineHostKey.objects.select_for_update().filter(machine=machine).first()
        before = current.fingerprints if current else ""
        pinned, _ = MachineHostKey.objects.update_or_create(
            machine=machine, defaults={"host_key": host_key, "source": source}
        )
        record(
            actor,
            "ssh.host_key.pin",
            machine,
            {"fingerprint": keys.describe(new), "previous": before, "source": source},
        )
    return pinned


def verify_installed(
    machine_id: int,
    expected: dict,
    *,
    timeout_s: float,
    accept_new_host_key: bool = True,
    actor: Actor | None = None,
) -> list[Check]:
    """Log in to a freshly installed machine through its site's jump hosts and check what a technician
    would. ``expected`` may hold hostname, os ({"ID": "debian", "VERSION_ID": "12"}: substrings of
    /etc/os-release values), mac, ip, prefix, root_disk; an absent key is not checked. ``ip`` is also
    the address connected to (else the PXE NIC's).

    Host keys: an install gives the machine new host keys, so by default (the install's verification
    window) whatever key the machine offers is accepted, and pinned for the machine when at least one
    check ran and every check passed. Pass accept_new_host_key=False to require the pinned key instead.

    Raises an errors.AccessError subclass (``.reason``, ``.retryable``) when no connection could be made
    or the checks did not finish within ``timeout_s``; a failed check is a Check with ok=False.
    """
    actor = actor or Actor.system("install verification")
    machine = _machines([machine_id])[machine_id]
    hops, target = _route(machine, expected_ip=expected.get("ip"), accept_new_host_key=accept_new_host_key)
    per_hop = min(connect_timeout_s(), timeout_s)

    # Where the time ran out decides the reason: a bastion or target that never answered is as retryable
    # as when its own connect timeout fires first.
    chain = hops[0].label if len(hops) == 1 else "the jump hosts " + " → ".join(h.label for h in hops)
    stage = {"at": errors.BastionUnreachable, "label": chain}

    async def go():
        conns = await transport.open_chain(hops, connect_timeout=per_hop)
        try:
            stage.update(at=errors.TargetUnreachable, label=target.label)
            connected = await transport.connect_target(target, tunnel=conns[-1], connect_timeout=per_hop)
            stage.update(at=errors.VerifyTimeout)
            try:
                output = await transport.run(
                    connected.conn, checks.script(expected), timeout_s=timeout_s, max_output=VERIFY_MAX_OUTPUT
                )
            finally:
                connected.conn.close()
            return connected.host_key, output
        finally:
            await transport.close_all(conns)

    async def bounded():
        return await asyncio.wait_for(go(), timeout_s)

    try:
        host_key, output = _run_async(bounded)
    except TimeoutError:
        if stage["at"] is errors.VerifyTimeout:
            message = f"The checks on {machine.hostname} did not finish within {timeout_s:g} s."
        else:
            message = f"{stage['label']} did not answer within {timeout_s:g} s."
        raise stage["at"](message, host=stage["label"]) from None
    if output.timed_out:
        raise errors.VerifyTimeout(
            f"The checks on {machine.hostname} did not finish within {timeout_s:g} s.", host=target.label
        )
    results = checks.evaluate(checks.parse(output.output.decode(errors="replace")), expected)
    # With nothing checked nothing is proved, so nothing is pinned either.
    passed = bool(results) and all(c.ok for c in results)
    with transaction.atomic():
        if accept_new_host_key and passed:
            # Only a machine that proved to be the one installed (hostname, MAC, disk) gets its key pinned.
            pin_host_key(machine, keys.known_hosts_line(host_key), source=HostKeySource.INSTALL, actor=actor)
        record(
            actor,
            "ssh.verify",
            machine,
            {
                "all_ok": passed,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in results],
                "host_key": keys.describe([host_key]),
                "duration_s": output.duration_s,
            },
        )
    return results


def run_command(
    machine_ids: Iterable[int], command: str, *, actor: Actor, timeout_s: float, max_output: int
) -> list[CommandResult]:
    """Run ``command`` on every machine, in parallel, through each machine's site jump hosts (one chain
    per site, shared by its machines). Each machine must present its pinned host key. ``timeout_s``
    bounds the command on each machine; ``max_output`` caps the bytes kept of its output. One audit
    entry per machine, whatever happened. Results come in the order of ``machine_ids``.

    Raises PermissionDenied when the actor is a user who may not run commands."""
    if actor.user is not None and not can_run_commands(actor.user):
        raise PermissionDenied(f"{actor.label} may not run commands on machines.")
    if not command.strip():
        raise ValueError("The command is empty.")
    machines = _machines(machine_ids)
    outcomes: dict[int, transport.Output | errors.AccessError] = {}
    groups: dict[int, tuple[list[transport.Endpoint], list[tuple[int, transport.Endpoint]]]] = {}
    for pk, machine in machines.items():
        try:
            hops, target = _route(machine, expected_ip=None, accept_new_host_key=False)
        except errors.AccessError as exc:
            outcomes[pk] = exc
            continue
        groups.setdefault(machine.rack.site_id, (hops, []))[1].append((pk, target))
    per_hop = connect_timeout_s()
    limit = max_parallel()

    async def one(tunnel, target, gate):
        async with gate:
            try:
                connected = await transport.connect_target(target, tunnel=tunnel, connect_timeout=per_hop)
            except errors.AccessError as exc:
                return exc
            try:
                return await transport.run(connected.conn, command, timeout_s=timeout_s, max_output=max_output)
            except (OSError, asyncssh.Error) as exc:
                return errors.TargetUnreachable(f"{target.label} dropped the session: {exc}", host=target.label)
            finally:
                connected.conn.close()

    async def site_group(hops, members):
        try:
            conns = await transport.open_chain(hops, connect_timeout=per_hop)
        except errors.AccessError as exc:
            return {pk: exc for pk, _ in members}
        try:
            gate = asyncio.Semaphore(limit)
            done = await asyncio.gather(*(one(conns[-1], target, gate) for _, target in members))
            return {pk: result for (pk, _), result in zip(members, done, strict=True)}
        finally:
            await transport.close_all(conns)

    async def go():
        for part in await asyncio.gather(*(site_group(hops, members) for hops, members in groups.values())):
            outcomes.update(part)

    if groups:
        _run_async(go)

    results = [_result(machines[pk], outcomes[pk], timeout_s) for pk in machines]
    with transaction.atomic():
        for result in results:
            record(
                actor,
                "ssh.run",
                machines[result.machine_id],
                {
                    "command": command,
                    "exit_status": result.exit_status,
                    "output": result.output,
                    "truncated": result.truncated,
                    "duration_s": result.duration_s,
                    "reason": result.reason,
                    "message": result.message,
                },
            )
    return results


def _result(machine: Machine, outcome, timeout_s: float) -> CommandResult:
    if isinstance(outcome, errors.AccessError):
        return CommandResult(machine.pk, machine.hostname, None, "", False, 0.0, outcome.reason, outcome.message)
    text = outcome.output.decode(errors="replace")
    if outcome.timed_out:
        reason, message = "CommandTimeout", f"Stopped after {timeout_s:g} s."
    elif outcome.exit_signal:
        reason, message = "CommandKilled", f"Killed by signal {outcome.exit_signal}."
    else:
        reason, message = "", ""
    status = None if outcome.exit_signal else outcome.exit_status
    return CommandResult(
        machine.pk, machine.hostname, status, text, outcome.truncated, outcome.duration_s, reason, message
    )
