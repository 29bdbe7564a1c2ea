"""The site's SSH user CA: per-session certificates, rotation, and pushing the trust file to machines.

A certificate is signed for one session only: its key id is the person's username (sshd logs it with every
login), its principals are the logins that person's role may use on the site (SessionPolicy), it is valid
from a minute before now (clock skew between provisioner and the machines) until the session's maximum
length, and it permits a PTY and nothing else that outlives the session (no agent, port or X11 forwarding).
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass

import asyncssh
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.service import Actor, record
from inventory.models import Machine, MachineStatus, Site

from . import keys
from .models import SiteCA
from .service import run_command

# What the machines hold (written by the agent's ssh_keys task on install, by `ssh_ca --rotate --push` later).
TRUST_FILE = "/etc/ssh/provisioner-user-ca.pub"
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/50-provisioner-user-ca.conf"
SSHD_DROP_IN_TEXT = f"TrustedUserCAKeys {TRUST_FILE}\n"
# The certificate is valid from this long before it was signed: a machine whose clock is a little behind
# provisioner's would otherwise refuse a certificate "not yet valid".
CLOCK_SKEW_S = 60


@dataclass(frozen=True)
class SessionCredentials:
    """A fresh key and its certificate, for one session; held in memory only, never stored."""

    private_key: str
    certificate: str
    key_id: str
    serial: int
    principals: tuple[str, ...]
    valid_before: int  # epoch seconds

    def __repr__(self):
        return f"<SessionCredentials key_id={self.key_id!r} serial={self.serial} principals={self.principals}>"


def sign_session(
    ca: SiteCA, *, key_id: str, principals: list[str], serial: int, valid_before: int, valid_after: int | None = None
) -> SessionCredentials:
    """A new ed25519 key and a user certificate for it, signed by the site's CA."""
    if not principals:
        raise ValueError("A session certificate needs at least one principal.")
    ca_key = keys.parse_private_key(ca.get_private_key())
    user_key = asyncssh.generate_private_key("ssh-ed25519")
    after = int(time.time()) - CLOCK_SKEW_S if valid_after is None else valid_after
    cert = ca_key.generate_user_certificate(
        user_key,
        key_id,
        serial=serial,
        principals=list(principals),
        valid_after=after,
        valid_before=valid_before,
        permit_x11_forwarding=False,
        permit_agent_forwarding=False,
        permit_port_forwarding=False,
        permit_pty=True,
        permit_user_rc=False,
    )
    return SessionCredentials(
        private_key=user_key.export_private_key("openssh").decode(),
        certificate=cert.export_certificate("openssh").decode(),
        key_id=key_id,
        serial=serial,
        principals=tuple(principals),
        valid_before=valid_before,
    )


def rotate(site: Site, actor: Actor) -> SiteCA:
    """A new CA key becomes current; the old public key stays trusted as the previous one (audited)."""
    SiteCA.for_site(site)
    with transaction.atomic():
        ca = SiteCA.objects.select_for_update().get(site=site)
        old = ca.public_key
        private = keys.generate_private_key()
        ca.previous_public_key = old
        ca.public_key = keys.public_key_line(private, comment=f"provisioner-user-ca@{site.slug}")
        ca.set_private_key(private)
        ca.rotated_at = timezone.now()
        ca.save()
        record(
            actor,
            "ssh.ca.rotate",
            site,
            {"new": _fingerprint(ca.public_key), "previous": _fingerprint(old)},
        )
    return ca


def _fingerprint(line: str) -> str:
    return keys.describe(keys.parse_host_keys(line)) if line.strip() else ""


def trust_command(
    trusted: list[str], *, trust_file: str = TRUST_FILE, drop_in: str = SSHD_DROP_IN, reload: bool = True
) -> str:
    """A shell command that writes the trust file and the sshd drop-in (atomically, 0644) on a machine.
    sshd reads TrustedUserCAKeys at every login, so a new key works at once; a new drop-in needs a reload."""
    lines = " ".join(shlex.quote(line) for line in trusted)
    directive = shlex.quote(f"TrustedUserCAKeys {trust_file}")
    return (
        'set -e; S=""; [ "$(id -u)" = 0 ] || S="sudo -n"; umask 022; '
        f"$S mkdir -p {shlex.quote(os.path.dirname(drop_in))}; "
        f"printf '%s\\n' {lines} | $S tee {trust_file}.new >/dev/null; $S mv {trust_file}.new {trust_file}; "
        f"if ! grep -qsx {directive} {drop_in}; then "
        f"printf '%s\\n' {directive} | $S tee {drop_in} >/dev/null; "
        + ("$S systemctl reload ssh 2>/dev/null || $S systemctl reload sshd 2>/dev/null || true; " if reload else "")
        + "fi; "
        f'echo "trusted: $(wc -l < {trust_file}) key(s)"'
    )


def push(site: Site, actor: Actor):
    """Write the site's trusted CA keys to every deployed machine of the site, through the site login
    (access.service.run_command: one audit entry per machine). Returns its CommandResults."""
    ids = list(
        Machine.objects.filter(rack__site=site, status=MachineStatus.DEPLOYED)
        .order_by("hostname")
        .values_list("pk", flat=True)
    )
    if not ids:
        return []
    command = trust_command(SiteCA.for_site(site).trusted_keys())
    return run_command(
        ids, command, actor=actor, timeout_s=settings.SSH_COMMAND_TIMEOUT_S, max_output=settings.SSH_MAX_OUTPUT_BYTES
    )
