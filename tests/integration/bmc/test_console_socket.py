"""The serial console's websocket through the real ASGI stack (origin check, session auth, routing), against
ipmi_sim's serial-over-LAN to a serial port the test plays (it echoes what it receives, as a shell would):
one writer, others watching, take-over and hand-over, technicians only, everything recorded and audited."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync

from audit.models import AuditEntry
from serialconsole import hub
from serialconsole.models import ConsoleSession, EndReason
from serialconsole.recording import read_cast
from tests.conftest import make_bmc, make_machine
from tests.integration.ui.conftest import user_with_role
from tests.websockets import communicator, connect, session_cookie

from .conftest import IPMI_USER

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def console_settings(settings, tmp_path):
    settings.CONSOLE_IDLE_GRACE_S = 0.3
    settings.CONSOLE_DIR = tmp_path / "console"
    yield
    hub._hubs.clear()


def ipmi_machine(sim):
    machine = make_machine()
    make_bmc(machine, driver="ipmi", port=sim.port, username=IPMI_USER, password=sim.password)
    return machine


def test_one_writer_others_watch_everything_recorded(sol_sim):
    machine = ipmi_machine(sol_sim)
    alice = session_cookie(user_with_role("technician", "alice"))
    bob = session_cookie(user_with_role("technician", "bob"))
    path = f"/ws/machines/{machine.hostname}/console/"

    async def scenario():
        writer = await connect(path, alice)
        await writer.until_notice(type="state", you="writer", writer="alice")
        watcher = await connect(path, bob)
        await watcher.until_notice(type="state", you="watcher", writer="alice")

        await writer.comm.send_to(bytes_data=b"uname -a\r")
        await asyncio.to_thread(sol_sim.serial.wait_for, b"uname -a\r")
        await writer.until_output(b"uname -a")  # the serial port echoes: both see it
        await watcher.until_output(b"uname -a")

        await asyncio.to_thread(sol_sim.serial.send, b"Linux node 6.1.0\r\n")
        await writer.until_output(b"Linux node 6.1.0")
        await watcher.until_output(b"Linux node 6.1.0")

        await watcher.comm.send_to(bytes_data=b"reboot\r")
        refused = await watcher.until_notice(type="refused")
        assert refused["message"] == "alice is typing; you are watching"

        await watcher.comm.send_to(text_data=json.dumps({"type": "take"}))
        await watcher.until_notice(type="state", you="writer", writer="bob")
        await writer.until_notice(type="state", you="watcher", writer="bob")
        await watcher.comm.send_to(bytes_data=b"whoami\r")
        await asyncio.to_thread(sol_sim.serial.wait_for, b"whoami\r")

        await watcher.comm.disconnect()  # bob leaves: the keyboard goes back to alice
        await writer.until_notice(type="state", you="writer", writer="alice")
        console = hub.running(machine.pk)
        await writer.comm.disconnect()
        await asyncio.wait_for(console.ended.wait(), 10)  # after the grace period

    async_to_sync(scenario)()
    assert b"reboot" not in sol_sim.serial.received  # the watcher's keys never reached the machine

    session = ConsoleSession.objects.get(machine=machine)
    assert session.end_reason == EndReason.IDLE and session.ended_at is not None
    assert session.opened_by_label == "alice"
    assert session.bytes_in == len(b"uname -a\r") + len(b"whoami\r")
    assert session.cast_bytes == session.cast_path.stat().st_size > 0

    header, events = read_cast(session.cast_path)
    assert header["version"] == 2 and header["width"] == 80
    inputs = "".join(e[2] for e in events if e[1] == "i")
    outputs = "".join(e[2] for e in events if e[1] == "o")
    markers = [e[2] for e in events if e[1] == "m"]
    assert inputs == "uname -a\rwhoami\r"
    assert "Linux node 6.1.0" in outputs and "uname -a" in outputs
    assert markers == [
        "alice has the keyboard",
        "bob took the keyboard from alice",
        "alice has the keyboard (bob left)",
    ]
    assert [e[0] for e in events] == sorted(e[0] for e in events)

    trail = list(
        AuditEntry.objects.filter(object_type="inventory.machine", object_id=str(machine.pk))
        .order_by("id")
        .values_list("actor_label", "action")
    )
    assert trail == [
        ("alice", "machine.console.start"),
        ("alice", "machine.console.open"),
        ("bob", "machine.console.open"),
        ("bob", "machine.console.takeover"),
        ("bob", "machine.console.close"),
        ("alice", "machine.console.handover"),
        ("alice", "machine.console.close"),
        ("console", "machine.console.end"),
    ]
    end = AuditEntry.objects.get(action="machine.console.end")
    assert end.details["session"] == session.pk and end.details["reason"] == "idle"
    assert sol_sim.password not in json.dumps(list(AuditEntry.objects.values_list("details", flat=True)))


@pytest.mark.parametrize("role", ["viewer", "anonymous"])
def test_a_viewer_cannot_open_the_console(sol_sim, role):
    machine = ipmi_machine(sol_sim)
    user = session_cookie(user_with_role("viewer", "vera")) if role == "viewer" else None

    async def scenario():
        comm = communicator(f"/ws/machines/{machine.hostname}/console/", user)
        connected, code = await comm.connect(timeout=15)
        assert (connected, code) == (False, 4403)

    async_to_sync(scenario)()
    assert not ConsoleSession.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="machine.console").exists()


def test_a_driver_without_a_console_is_refused_in_words(db):
    machine = make_machine()
    make_bmc(machine, driver="redfish", port=8000)
    tech = session_cookie(user_with_role("technician", "tess"))

    async def scenario():
        socket = await connect(f"/ws/machines/{machine.hostname}/console/", tech)
        error = await socket.until_notice(type="error")
        await socket.until_notice(type="closed", code=4409)
        return error["message"]

    message = async_to_sync(scenario)()
    assert message == f"{machine.hostname}: the Redfish driver cannot do serial console."
    assert not ConsoleSession.objects.exists()


def test_a_bmc_that_rejects_the_login_fails_the_session_with_the_reason(sol_sim):
    machine = make_machine()
    make_bmc(machine, driver="ipmi", port=sol_sim.port, username=IPMI_USER, password="Wrong-pw-4Tt")
    tech = session_cookie(user_with_role("technician", "tess"))

    async def scenario():
        socket = await connect(f"/ws/machines/{machine.hostname}/console/", tech)
        return (await socket.until_notice(type="error"))["message"]

    message = async_to_sync(scenario)()
    assert "rejected" in message and "Wrong-pw-4Tt" not in message
    session = ConsoleSession.objects.get(machine=machine)
    assert session.end_reason == EndReason.FAILED and "rejected" in session.end_message
    assert hub.running(machine.pk) is None


def test_the_fake_console_is_a_little_shell(db):
    machine = make_machine(hostname="demo-node")
    make_bmc(machine, driver="fake", port=1623)
    tech = session_cookie(user_with_role("technician", "tess"))

    async def scenario():
        socket = await connect(f"/ws/machines/{machine.hostname}/console/", tech)
        await socket.until_output(b"demo-node login: ")
        await socket.comm.send_to(bytes_data=b"root\r")
        await socket.until_output(b"Password: ")
        await socket.comm.send_to(bytes_data=b"hunter2\r")
        await socket.comm.send_to(bytes_data=b"echo hello console\r")
        await socket.until_output(b"hello console\r\nroot@demo-node:~$ ")
        assert b"hunter2" not in socket.output  # a password prompt does not echo
        await socket.comm.disconnect()

    async_to_sync(scenario)()


def test_a_console_that_dies_ends_the_session_for_everyone_watching(sol_sim):
    machine = ipmi_machine(sol_sim)
    tech = session_cookie(user_with_role("technician", "tess"))

    async def scenario():
        socket = await connect(f"/ws/machines/{machine.hostname}/console/", tech)
        await socket.until_notice(type="state", you="writer")
        console = hub.running(machine.pk)
        console.console._proc.kill()  # the SOL helper dies, as when the BMC drops the session
        ended = await socket.until_notice(type="ended")
        await socket.until_notice(type="closed", code=4000)
        await asyncio.wait_for(console.ended.wait(), 10)
        return ended["message"]

    message = async_to_sync(scenario)()
    assert message == "the serial-over-LAN session ended"
    session = ConsoleSession.objects.get(machine=machine)
    assert session.end_reason == EndReason.ENDED and session.end_message == message
    assert hub.running(machine.pk) is None


def test_sessions_a_dead_web_process_left_open_are_settled(db):
    machine = make_machine()
    open_one = ConsoleSession.objects.create(machine=machine, hostname=machine.hostname, driver="ipmi")
    assert hub.settle_orphans() == 1
    open_one.refresh_from_db()
    assert open_one.end_reason == EndReason.SHUTDOWN and open_one.ended_at is not None
