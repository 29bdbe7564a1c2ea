"""The SSH terminal's websockets through the real ASGI stack, against real OpenSSH (a bastion, and a target
that trusts the site's CA and authorizes no key): a technician's shell, an admin watching it live and ending
it, who may open or watch, a script driving the session it opened through the API, and clear failures."""

from __future__ import annotations

import json
import socket

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.test import Client

from access import terminal
from access.models import ShellSession
from accounts.api_tokens import create_token
from audit.models import AuditEntry
from audit.service import Actor
from core import queues
from core.asciicast import read_cast
from inventory.models import MachineStatus
from tests.integration.ui.conftest import user_with_role
from tests.websockets import communicator, connect, session_cookie

from .conftest import add_shell_target

pytestmark = pytest.mark.django_db(transaction=True)

HOSTNAME = socket.gethostname()


@pytest.fixture(autouse=True)
def recordings(settings, tmp_path):
    settings.SSH_RECORDING_DIR = tmp_path / "ssh"
    settings.SSH_CONNECT_TIMEOUT_S = 5


def token(user) -> str:
    return create_token(user, "script", actor=Actor.for_user(user))[1]


def open_frame(**extra) -> str:
    return json.dumps({"type": "open", "cols": 100, "rows": 30, **extra})


def test_a_technician_runs_hostname_an_admin_watches_live_and_ends_it(shell_site, shell_lab):
    machine = add_shell_target(shell_site, shell_lab, hostname="web-01", status=MachineStatus.DEPLOYED)
    tina = session_cookie(user_with_role("technician", "tina"))
    ada_user = user_with_role("admin", "ada")
    ada = session_cookie(ada_user)

    async def scenario():
        shell = await connect("/ws/machines/web-01/terminal/", tina)
        await shell.comm.send_to(text_data=open_frame())
        opened = await shell.until_notice(type="session")
        await shell.until_notice(type="ready")
        await shell.comm.send_to(bytes_data=b"hostname\r")
        await shell.until_output(HOSTNAME.encode() + b"\r\n")

        watcher = await connect(f"/ws/ssh-sessions/{opened['id']}/watch/", ada)
        await watcher.until_notice(type="session", watching=True)
        await watcher.until_output(HOSTNAME.encode())  # the screen so far, from the recording
        await shell.comm.send_to(bytes_data=b"echo seen-live\r")
        await watcher.until_output(b"seen-live\r\n")
        await watcher.comm.send_to(bytes_data=b"reboot\r")
        assert "read-only" in (await watcher.until_notice(type="refused"))["message"]
        await shell.comm.send_to(text_data=json.dumps({"type": "resize", "cols": 120, "rows": 40}))

        await database_sync_to_async(terminal.end_session)(opened["id"], ada_user)
        ended = await shell.until_notice(type="ended")
        assert ended["reason"] == "ended" and ended["message"] == "ended by ada"
        assert (await shell.until_notice(type="closed"))["code"] == 4000
        assert (await watcher.until_notice(type="ended"))["reason"] == "ended"
        return opened["id"]

    session = ShellSession.objects.get(pk=async_to_sync(scenario)())
    assert session.end_reason == "ended" and session.ended_by.get_username() == "ada"
    assert session.client == "browser" and session.opened_by_label == "tina"
    assert HOSTNAME in session.transcript and "reboot" not in session.transcript
    _, events = read_cast(session.cast_path)
    assert "hostname\r" in "".join(e[2] for e in events if e[1] == "i")
    assert ["r", "120x40"] in [e[1:] for e in events]
    actions = list(AuditEntry.objects.filter(object_id=str(machine.pk)).values_list("action", "actor_label"))
    assert ("ssh.session.watch", "ada") in actions and ("ssh.session.end", "ada") in actions
    assert ("ssh.session.open", "tina") in actions


def test_viewers_cannot_open_or_watch_technicians_cannot_watch_and_a_bad_token_is_refused(shell_site, shell_lab):
    add_shell_target(shell_site, shell_lab, hostname="web-02", status=MachineStatus.DEPLOYED)
    theo = user_with_role("technician", "theo")
    session = ShellSession.objects.create(
        hostname="web-02", opened_by=theo, opened_by_label="theo", client="browser", principal="root"
    )
    vic = session_cookie(user_with_role("viewer", "vic"))
    tina = session_cookie(user_with_role("technician", "tina"))

    async def refused(path, cookie=None, **kw):
        connected, code = await communicator(path, cookie, **kw).connect(timeout=10)
        return connected, code

    async def scenario():
        assert await refused("/ws/machines/web-02/terminal/", vic) == (False, 4403)
        assert await refused(f"/ws/ssh-sessions/{session.pk}/watch/", vic) == (False, 4403)
        assert await refused(f"/ws/ssh-sessions/{session.pk}/watch/", tina) == (False, 4403)
        assert await refused("/ws/machines/web-02/terminal/") == (False, 4403)  # anonymous
        assert (await refused("/ws/machines/web-02/terminal/", token="pvt_not-a-token"))[0] is False
        assert await refused("/ws/machines/nope/terminal/", tina) == (False, 4404)

    async_to_sync(scenario)()
    assert not ShellSession.objects.exclude(pk=session.pk).exists()


def test_a_script_opens_through_the_api_and_drives_the_session_once(shell_site, shell_lab):
    add_shell_target(shell_site, shell_lab, hostname="web-03", status=MachineStatus.DEPLOYED)
    tina, theo = user_with_role("technician", "tina"), user_with_role("technician", "theo")
    tina_key, theo_key = token(tina), token(theo)
    answer = Client(HTTP_AUTHORIZATION=f"Token {tina_key}").post(
        "/api/v1/machines/web-03/ssh-sessions", {"reason": "check disks"}, content_type="application/json"
    )
    assert answer.status_code == 201, answer.content
    opened = answer.json()
    assert opened["websocket"] == f"/ws/machines/web-03/terminal/?session={opened['id']}"
    assert opened["client"] == "api" and opened["ended_at"] is None

    async def scenario():
        stranger = await connect(opened["websocket"], token=theo_key)
        await stranger.comm.send_to(text_data=json.dumps({"type": "open", "cols": 80, "rows": 24}))
        assert "not one you opened" in (await stranger.until_notice(type="error"))["message"]

        shell = await connect(f"{opened['websocket']}&cols=80&rows=24", token=tina_key)
        await shell.until_notice(type="ready")
        await shell.comm.send_to(bytes_data=b"echo from-a-script\r")
        await shell.until_output(b"from-a-script\r\n")

        second = await connect(opened["websocket"] + "&cols=80&rows=24", token=tina_key)
        assert (await second.until_notice(type="error"))["message"] == f"Session {opened['id']} is already connected."

        await shell.comm.send_to(bytes_data=b"exit\r")
        assert (await shell.until_notice(type="ended"))["reason"] == "exited"

    try:
        async_to_sync(scenario)()
    finally:
        queues.connection().delete(f"provisioner:ssh-session-attached:{opened['id']}")
    session = ShellSession.objects.get(pk=opened["id"])
    assert session.end_reason == "exited" and session.reason == "check disks" and "from-a-script" in session.transcript


def test_bad_requests_and_an_unreachable_jump_host_get_clear_messages(shell_site, shell_lab):
    add_shell_target(shell_site, shell_lab, hostname="web-04", status=MachineStatus.DEPLOYED)
    tina = session_cookie(user_with_role("technician", "tina"))

    async def scenario():
        bad = await connect("/ws/machines/web-04/terminal/", tina)
        await bad.comm.send_to(text_data=json.dumps({"type": "open", "cols": 0, "rows": 24}))
        assert "cols and rows" in (await bad.until_notice(type="error"))["message"]
        assert (await bad.until_notice(type="closed"))["code"] == 4400

        shell = await connect("/ws/machines/web-04/terminal/?cols=80&rows=24", tina)
        await shell.until_notice(type="ready")
        await shell.comm.send_to(bytes_data=b"x" * 5000)
        assert "at most 4096" in (await shell.until_notice(type="refused"))["message"]
        await shell.comm.send_to(text_data="[not an object]")
        await shell.until_notice(type="refused")
        await shell.comm.send_to(text_data=json.dumps({"type": "close"}))
        assert (await shell.until_notice(type="ended"))["reason"] == "closed"

        # The jump host stops answering: the browser is told which one, and the row says failed.
        hop = await database_sync_to_async(shell_site.jump_hosts.get)()
        hop.port = 1  # nothing listens there
        await database_sync_to_async(hop.save)()
        down = await connect("/ws/machines/web-04/terminal/?cols=80&rows=24", tina)
        error = await down.until_notice(type="error")
        assert "127.0.0.1" in error["message"], error
        assert (await down.until_notice(type="closed"))["code"] == 4409
        return error["message"]

    message = async_to_sync(scenario)()
    failed = ShellSession.objects.get(end_reason="failed")
    assert failed.end_message == message
    assert ShellSession.objects.filter(end_reason="closed").count() == 1


def test_a_protected_machine_needs_a_reason_before_anything_connects(shell_site, shell_lab):
    add_shell_target(shell_site, shell_lab, hostname="web-05", status=MachineStatus.DEPLOYED, protected=True)
    tina = session_cookie(user_with_role("technician", "tina"))

    async def scenario():
        shell = await connect("/ws/machines/web-05/terminal/", tina)
        await shell.comm.send_to(text_data=open_frame())
        assert "give a reason" in (await shell.until_notice(type="error"))["message"]
        shell = await connect("/ws/machines/web-05/terminal/", tina)
        await shell.comm.send_to(text_data=open_frame(reason="disk replacement, ticket 4411"))
        await shell.until_notice(type="ready")
        await shell.comm.disconnect()  # leaving the page closes the session

    async_to_sync(scenario)()
    session = ShellSession.objects.get()
    assert session.reason == "disk replacement, ticket 4411" and session.end_reason == "closed"
