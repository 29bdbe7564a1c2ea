"""Recorded interactive sessions against real OpenSSH: a bastion, and a target that trusts the site's CA and
authorizes no key (so only the session's certificate logs in). Shell, recording, transcript, idle timeout,
maximum length, an admin ending a session from another process, and the audit trail."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from access import errors, terminal
from access.live import GroupLink
from access.models import SessionEnd, SessionPolicy, ShellSession
from audit.models import AuditEntry
from core.asciicast import read_cast
from tests.integration.ui.conftest import user_with_role

from .conftest import add_shell_target

pytestmark = pytest.mark.django_db(transaction=True)

HOSTNAME = socket.gethostname()


@pytest.fixture(autouse=True)
def recordings(settings, tmp_path):
    settings.SSH_RECORDING_DIR = tmp_path / "ssh"
    settings.SSH_CONNECT_TIMEOUT_S = 5


class Holder:
    """What holds a Terminal (the websocket consumer, manage.py ssh): collects output, notes the end."""

    def __init__(self):
        self.output = b""
        self.ended: ShellSession | None = None
        self.changed = asyncio.Event()

    def on_output(self, data: bytes) -> None:
        self.output += data
        self.changed.set()

    async def on_end(self, session) -> None:
        self.ended = session

    async def until(self, text: bytes, timeout: float = 5) -> None:
        async def wait():
            while text not in self.output:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def terminal(self, session_id: int) -> terminal.Terminal:
        return terminal.Terminal(session_id, on_output=self.on_output, on_end=self.on_end)


def policy(site, **fields):
    SessionPolicy.objects.filter(pk=SessionPolicy.for_site(site).pk).update(**fields)


def test_a_certificate_only_login_runs_a_shell_and_records_everything(shell_site, shell_lab):
    machine = add_shell_target(shell_site, shell_lab)
    user = user_with_role("technician")
    session = terminal.open_session(user, machine, reason="check the disks", client="cli")
    holder = Holder()

    async def run():
        term = holder.terminal(session.pk)
        await term.start(100, 30)
        await term.write(b"echo $((6*7)); hostname\r")
        await holder.until(HOSTNAME.encode() + b"\r\n")
        await term.resize(120, 40)
        await term.write(b"stty size\r")
        await holder.until(b"40 120")
        await term.write(b"exit\r")
        return await asyncio.wait_for(term.wait(), 5)

    ended = async_to_sync(run)()
    assert ended.end_reason == SessionEnd.EXITED and holder.ended.pk == session.pk
    assert (ended.principal, ended.cert_key_id, ended.cert_serial) == (shell_site.ssh_login.username, user.username,
                                                                       session.pk)  # fmt: skip
    assert ended.via.startswith("jump host jump-") and ended.bytes_in == len(
        b"echo $((6*7)); hostname\rstty size\rexit\r"
    )
    assert "42" in ended.transcript and HOSTNAME in ended.transcript and "\x1b" not in ended.transcript
    header, events = read_cast(ended.cast_path)
    assert (header["width"], header["height"]) == (100, 30)
    shown = "".join(e[2] for e in events if e[1] == "o")
    typed = "".join(e[2] for e in events if e[1] == "i")
    assert HOSTNAME in shown and "40 120" in shown
    assert typed == "echo $((6*7)); hostname\rstty size\rexit\r"
    assert [e[2] for e in events if e[1] == "r"] == ["120x40"]
    assert ended.cast_bytes == ended.cast_path.stat().st_size
    trail = list(AuditEntry.objects.filter(action__startswith="ssh.session.").order_by("id"))
    assert [(a.action, a.actor_label, a.details["session"]) for a in trail] == [
        ("ssh.session.open", user.username, session.pk),
        ("ssh.session.close", user.username, session.pk),
    ]
    assert trail[0].details["reason"] == "check the disks" and trail[1].details["reason"] == "exited"
    assert trail[0].object_id == str(machine.pk)
    # The target authorizes no key: the site login key alone is refused there.
    assert shell_lab.trust_file.read_text().strip() == shell_site.ssh_ca.public_key


def test_idle_timeout_ends_the_session_and_input_can_go_unrecorded(shell_site, shell_lab):
    policy(shell_site, idle_timeout_s=1, record_input=False)
    machine = add_shell_target(shell_site, shell_lab)
    session = terminal.open_session(user_with_role("technician"), machine, reason="", client="browser")
    holder = Holder()

    async def run():
        term = holder.terminal(session.pk)
        await term.start()
        await term.write(b"echo typed-but-not-recorded\r")
        await holder.until(b"typed-but-not-recorded\r\n")
        return await asyncio.wait_for(term.wait(), 5)

    ended = async_to_sync(run)()
    assert ended.end_reason == SessionEnd.IDLE
    assert 1 <= (ended.ended_at - ended.started_at).total_seconds() < 4
    _, events = read_cast(ended.cast_path)
    assert [e for e in events if e[1] == "i"] == [] and any(e[1] == "o" for e in events)
    close = AuditEntry.objects.get(action="ssh.session.close")
    assert (close.actor_label, close.details["reason"]) == ("ssh session", "idle")


def test_the_session_ends_at_its_maximum_length_even_when_busy(shell_site, shell_lab):
    policy(shell_site, max_length_s=2, idle_timeout_s=60)
    machine = add_shell_target(shell_site, shell_lab)
    session = terminal.open_session(user_with_role("admin"), machine, reason="", client="api")
    holder = Holder()

    async def run():
        term = holder.terminal(session.pk)
        await term.start()
        await term.write(b"while :; do echo tick; sleep 0.2; done\r")
        return await asyncio.wait_for(term.wait(), 6)

    ended = async_to_sync(run)()
    assert ended.end_reason == SessionEnd.EXPIRED
    assert ended.ended_at <= ended.cert_valid_before + timedelta(seconds=1)
    assert b"tick" in holder.output


def test_an_admin_ends_a_session_held_by_another_process(shell_site, shell_lab):
    machine = add_shell_target(shell_site, shell_lab)
    tech, admin = user_with_role("technician"), user_with_role("admin")
    session = terminal.open_session(tech, machine, reason="", client="cli")
    holder = Holder()
    watched = []

    async def run():
        term = holder.terminal(session.pk)
        await term.start()
        link = GroupLink(term)
        await link.join()
        await term.write(b"echo ready\r")
        await holder.until(b"ready\r\n")
        # A watcher in another process: a channel of its own in the session's group.
        watcher = await link.layer.new_channel()
        await link.layer.group_add(terminal.group_name(session.pk), watcher)
        await link.output(b"seen by watchers")
        watched.append(await asyncio.wait_for(link.layer.receive(watcher), 2))
        await database_sync_to_async(terminal.end_session)(session.pk, admin)
        ended = await asyncio.wait_for(term.wait(), 5)
        await link.ended(ended)
        watched.append(await asyncio.wait_for(link.layer.receive(watcher), 2))  # the admin's request
        watched.append(await asyncio.wait_for(link.layer.receive(watcher), 2))
        return ended

    ended = async_to_sync(run)()
    assert (ended.end_reason, ended.ended_by_id, ended.end_message) == ("ended", admin.pk, f"ended by {admin.username}")
    assert watched[0] == {"type": "session.output", "data": "c2VlbiBieSB3YXRjaGVycw=="}
    assert watched[1] == {"type": "session.end", "by": admin.pk, "by_label": admin.username}
    assert watched[2] == {"type": "session.ended", "reason": "ended", "message": f"ended by {admin.username}"}
    end = AuditEntry.objects.get(action="ssh.session.end")
    close = AuditEntry.objects.get(action="ssh.session.close")
    assert (end.actor_label, close.actor_label, close.details["reason"]) == (admin.username, admin.username, "ended")


def test_a_session_whose_process_died_is_ended_by_the_admin_at_once(shell_site, shell_lab):
    machine = add_shell_target(shell_site, shell_lab)
    session = terminal.open_session(user_with_role("technician"), machine, reason="", client="cli")
    ShellSession.objects.filter(pk=session.pk).update(heartbeat_at=session.started_at - terminal.stale_after() * 2)
    admin = user_with_role("admin")
    ended = terminal.end_session(session.pk, admin)
    assert (ended.end_reason, ended.ended_by_id) == (SessionEnd.ENDED, admin.pk)
    with pytest.raises(terminal.PermissionDenied):
        terminal.end_session(session.pk, user_with_role("technician", "another-tech"))


def test_a_machine_offering_another_host_key_fails_the_session_with_the_reason(shell_site, shell_lab, lab):
    machine = add_shell_target(shell_site, shell_lab)
    machine.ssh_host_key.host_key = lab.stranger_host_key_pub
    machine.ssh_host_key.save()
    session = terminal.open_session(user_with_role("technician"), machine, reason="", client="browser")
    holder = Holder()

    async def run():
        term = holder.terminal(session.pk)
        with pytest.raises(errors.TargetHostKeyMismatch) as failure:
            await term.start()
        return failure.value

    failure = async_to_sync(run)()
    row = ShellSession.objects.get(pk=session.pk)
    assert (row.end_reason, row.end_message) == (SessionEnd.FAILED, failure.message)
    assert "offered host key" in failure.message and not row.cast_path.exists()
    assert AuditEntry.objects.get(action="ssh.session.close").details["reason"] == "failed"
