"""The site's SSH user CA against real sshd: what the target refuses (a stale certificate, a login the
certificate does not name), rotation keeping the previous key trusted, the trust file written on machines,
and the session policy's refusals."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from django.core.exceptions import PermissionDenied

from access import ca, errors, service, transport
from access.models import SessionPolicy, ShellSession, SiteCA
from access.terminal import SessionRefused, open_session
from audit.models import AuditEntry
from audit.service import Actor
from tests.integration.ui.conftest import user_with_role

from .conftest import add_shell_target

pytestmark = pytest.mark.django_db


def login(machine, authority, *, principals, user="", valid_before=None, valid_after=None):
    """Log in to the machine as ``user`` (default the first principal) with a certificate from ``authority``."""
    hops, target = service.session_route(machine)
    creds = ca.sign_session(
        authority,
        key_id="alice",
        principals=principals,
        serial=7,
        valid_before=valid_before or int(time.time()) + 60,
        valid_after=valid_after,
    )
    endpoint = transport.Endpoint(
        target.label,
        target.address,
        target.port,
        user or principals[0],
        creds.private_key,
        target.pinned_host_keys,
        certificate=creds.certificate,
    )

    async def go():
        conns = await transport.open_chain(hops, connect_timeout=5)
        try:
            connected = await transport.connect_target(endpoint, tunnel=conns[-1], connect_timeout=5)
            connected.conn.close()
        finally:
            await transport.close_all(conns)

    asyncio.run(go())


def test_a_stale_certificate_and_an_unnamed_login_are_refused(shell_site, shell_lab, lab):
    machine = add_shell_target(shell_site, shell_lab)
    authority = SiteCA.for_site(shell_site)
    login(machine, authority, principals=[lab.user])  # fresh, naming the login: accepted

    now = int(time.time())
    with pytest.raises(errors.TargetAuthFailed) as stale:
        login(machine, authority, principals=[lab.user], valid_after=now - 600, valid_before=now - 60)
    assert stale.value.message == (
        f"{machine.hostname} (127.0.0.1:{shell_lab.server.port}) refused the session certificate of user "
        f"{lab.user!r} (publickey authentication failed)."
    )
    with pytest.raises(errors.TargetAuthFailed):
        login(machine, authority, principals=["someone-else"], user=lab.user)


def test_rotation_keeps_the_previous_key_trusted(shell_site, shell_lab, lab):
    machine = add_shell_target(shell_site, shell_lab)
    before = SiteCA.for_site(shell_site)
    old_private = before.get_private_key()
    admin = user_with_role("admin")

    rotated = ca.rotate(shell_site, Actor.for_user(admin))

    assert rotated.trusted_keys() == [rotated.public_key, before.public_key] and rotated.rotated_at
    assert rotated.get_private_key() != old_private
    entry = AuditEntry.objects.get(action="ssh.ca.rotate")
    assert entry.actor_label == admin.username and entry.details["previous"].startswith("ssh-ed25519 SHA256:")
    assert "PRIVATE" not in str(entry.details)
    shell_lab.trust(rotated.trusted_keys())
    login(machine, rotated, principals=[lab.user])
    old = SiteCA(site=shell_site, private_key_ciphertext=before.private_key_ciphertext)
    login(machine, old, principals=[lab.user])  # a machine may still hold only the old key: both work meanwhile
    shell_lab.trust([rotated.public_key])
    with pytest.raises(errors.TargetAuthFailed):
        login(machine, old, principals=[lab.user])


def test_the_trust_command_writes_the_files_a_machine_needs(tmp_path):
    trust, drop_in = tmp_path / "ssh" / "ca.pub", tmp_path / "ssh" / "sshd_config.d" / "50-ca.conf"
    (tmp_path / "ssh").mkdir()
    lines = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA new", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB old"]
    command = ca.trust_command(lines, trust_file=str(trust), drop_in=str(drop_in), reload=False)
    for _ in range(2):  # running it again changes nothing
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
        assert done.stdout == "trusted: 2 key(s)\n"
    assert trust.read_text() == "\n".join(lines) + "\n" and trust.stat().st_mode & 0o777 == 0o644
    assert drop_in.read_text() == f"TrustedUserCAKeys {trust}\n"


def test_the_policy_refuses_viewers_lower_roles_and_protected_machines_without_a_reason(shell_site, shell_lab):
    machine = add_shell_target(shell_site, shell_lab)
    with pytest.raises(PermissionDenied, match="technician role"):
        service_open(user_with_role("viewer"), machine)
    SessionPolicy.objects.filter(pk=SessionPolicy.for_site(shell_site).pk).update(min_role="admin")
    with pytest.raises(PermissionDenied, match="only admins"):
        service_open(user_with_role("technician"), machine)
    assert service_open(user_with_role("admin"), machine).principal == shell_site.ssh_login.username

    SessionPolicy.objects.filter(site=shell_site).update(min_role="technician", technician_principals="ops")
    tech = user_with_role("technician", "tech2")
    with pytest.raises(PermissionDenied, match="may not log in as 'root'"):
        service_open(tech, machine, principal="root")
    machine.protected = True
    machine.save()
    with pytest.raises(SessionRefused, match="is protected: give a reason"):
        service_open(tech, machine)
    assert service_open(tech, machine, reason="disk alert").principal == "ops"
    assert ShellSession.objects.count() == 2
    assert AuditEntry.objects.filter(action="ssh.session.open").count() == 2


def service_open(user, machine, **kw):
    kw.setdefault("reason", "")
    return open_session(user, machine, client="cli", **kw)


def test_the_admin_shows_the_ca_public_keys_never_the_private_one(admin_client, shell_site):
    authority = SiteCA.for_site(shell_site)
    private = authority.get_private_key()
    page = admin_client.get(f"/admin/access/siteca/{authority.pk}/change/").content.decode()
    assert authority.public_key.split()[1] in page
    assert private.strip().splitlines()[1] not in page and authority.private_key_ciphertext not in page
    assert admin_client.get("/admin/access/siteca/add/").status_code == 403
    policy = SessionPolicy.for_site(shell_site)
    assert admin_client.get(f"/admin/access/sessionpolicy/{policy.pk}/change/").status_code == 200
