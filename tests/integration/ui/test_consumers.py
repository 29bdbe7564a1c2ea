"""The browsers' websockets through the real ASGI stack (origin check, session auth, URL routing)
and the real Redis channel layer: who may connect, which events reach which socket, and replay."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from config.asgi import application
from installs.events import emit
from installs.models import Event, EventKind, Install, InstallState
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def communicator(path: str, cookie: str | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if cookie is not None:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def emit_events(install_id: int, *messages: str, kind: str = EventKind.PROGRESS) -> list[int]:
    """Write events in one committed transaction, as the engine does; they are published on commit."""
    install = Install.objects.get(pk=install_id)
    with transaction.atomic():
        return [emit(install, kind, m).pk for m in messages]


async def receive_events(comm, count: int, timeout: float = 3) -> list[dict]:
    """The next ``count`` events, whether they came one by one or in a replay frame."""
    got = []
    while len(got) < count:
        frame = await comm.receive_json_from(timeout=timeout)
        got += frame.get("events", []) + ([frame["event"]] if "event" in frame else [])
    return got


async def receive_frame(comm, key: str, timeout: float = 3) -> dict:
    while True:
        frame = await comm.receive_json_from(timeout=timeout)
        if key in frame:
            return frame


def run(coro_fn, *args):
    return async_to_sync(coro_fn)(*args)


@pytest.fixture
def viewer(db):
    """A viewer's session cookie: the lowest role that may watch."""
    return session_cookie(user_with_role("viewer", "watcher"))


@pytest.mark.parametrize("role", ["anonymous", "norole"])
def test_socket_without_a_role_is_closed(role, scene):
    cookie = None if role == "anonymous" else session_cookie(user_with_role("norole", "nobody"))

    async def scenario():
        for path in (f"/ws/installs/{scene.running.pk}/", "/ws/dashboard/"):
            comm = communicator(path, cookie)
            connected, code = await comm.connect()
            assert not connected
            assert code == 4403
            await comm.disconnect()

    run(scenario)


def test_socket_from_another_origin_is_refused(scene, viewer):
    cookie = viewer

    async def scenario():
        comm = WebsocketCommunicator(
            application,
            "/ws/dashboard/",
            headers=[(b"origin", b"http://evil.example"), (b"cookie", f"sessionid={cookie}".encode())],
        )
        connected, _ = await comm.connect()
        assert not connected

    run(scenario)


def test_unknown_install_is_closed(scene, viewer):
    async def scenario():
        comm = communicator("/ws/installs/999999/", viewer)
        connected, code = await comm.connect()
        assert (connected, code) == (False, 4404)

    run(scenario)


def test_events_reach_only_the_socket_of_their_install(scene, viewer):
    other = scene.failed
    Install.objects.filter(pk=other.pk).update(state=InstallState.INSTALLING, failure_reason="", failure_message="")

    async def scenario():
        a = communicator(f"/ws/installs/{scene.running.pk}/", viewer)
        b = communicator(f"/ws/installs/{other.pk}/", viewer)
        assert (await a.connect())[0] and (await b.connect())[0]
        (id_a,) = await database_sync_to_async(emit_events)(scene.running.pk, "for A")
        (id_b,) = await database_sync_to_async(emit_events)(other.pk, "for B")
        got_a = await receive_events(a, 1)
        got_b = await receive_events(b, 1)
        assert [(e["id"], e["message"]) for e in got_a] == [(id_a, "for A")]
        assert [(e["id"], e["message"]) for e in got_b] == [(id_b, "for B")]
        assert await a.receive_nothing(timeout=0.3)
        assert await b.receive_nothing(timeout=0.3)
        await a.disconnect()
        await b.disconnect()

    run(scenario)


def test_replay_after_an_id_then_live_in_order_without_doubles(scene, viewer):
    ids = emit_events(scene.running.pk, *[f"stored {n}" for n in range(6)])

    async def scenario():
        comm = communicator(f"/ws/installs/{scene.running.pk}/?after={ids[1]}", viewer)
        assert (await comm.connect())[0]
        replayed = await receive_events(comm, 4)
        assert [e["id"] for e in replayed] == ids[2:]
        assert (await receive_frame(comm, "replayed"))["replayed"] == ids[-1]
        # A late duplicate of a replayed event (published after the replay read it) is not sent again.
        stale = await database_sync_to_async(lambda: Event.objects.get(pk=ids[-1]).as_message())()
        message = {"type": "install.events", "events": [stale]}
        await get_channel_layer().group_send(f"install-{scene.running.pk}", message)
        (live,) = await database_sync_to_async(emit_events)(scene.running.pk, "live one")
        got = await receive_events(comm, 1)
        assert [e["id"] for e in got] == [live]
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()

    run(scenario)


def test_replay_asked_by_first_message(scene, viewer):
    ids = emit_events(scene.running.pk, "one", "two", "three")

    async def scenario():
        comm = communicator(f"/ws/installs/{scene.running.pk}/", viewer)
        assert (await comm.connect())[0]
        await comm.send_json_to({"after": ids[0]})
        got = await receive_events(comm, 2)
        assert [e["message"] for e in got] == ["two", "three"]
        await comm.disconnect()

    run(scenario)


def test_a_viewer_socket_accepts_no_actions(scene, viewer):
    """Whatever a client sends, nothing changes: the socket only reads."""

    async def scenario():
        comm = communicator(f"/ws/installs/{scene.running.pk}/?after=0", viewer)
        assert (await comm.connect())[0]
        await receive_frame(comm, "replayed")
        for attempt in ({"action": "cancel"}, {"type": "install.cancel", "install": scene.running.pk}, ["x"]):
            await comm.send_json_to(attempt)
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()

    run(scenario)
    install = Install.objects.get(pk=scene.running.pk)
    assert install.state == InstallState.INSTALLING
    assert install.cancelled_by_label == ""


def test_dashboard_gets_every_install_but_not_log_lines(scene, viewer):
    async def scenario():
        comm = communicator("/ws/dashboard/", viewer)
        assert (await comm.connect())[0]
        await database_sync_to_async(emit_events)(scene.running.pk, "a log line", kind=EventKind.LOG)
        (state,) = await database_sync_to_async(emit_events)(scene.running.pk, "a → b", kind=EventKind.STATE)
        got = await receive_events(comm, 1)
        assert [e["id"] for e in got] == [state]
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()

    run(scenario)


def test_events_are_live_only_after_commit(scene, viewer):
    """An event rolled back never reaches a browser (it would be an event the database does not have)."""

    def rolled_back():
        install = Install.objects.get(pk=scene.running.pk)
        try:
            with transaction.atomic():
                emit(install, EventKind.PROGRESS, "never happened")
                raise RuntimeError
        except RuntimeError:
            pass

    async def scenario():
        comm = communicator(f"/ws/installs/{scene.running.pk}/", viewer)
        assert (await comm.connect())[0]
        await database_sync_to_async(rolled_back)()
        assert await comm.receive_nothing(timeout=0.5)
        await comm.disconnect()

    run(scenario)


def test_a_rolled_back_transaction_does_not_silence_later_events(scene, viewer):
    def rollback_then_commit():
        install = Install.objects.get(pk=scene.running.pk)
        try:
            with transaction.atomic():
                emit(install, EventKind.PROGRESS, "rolled back")
                raise RuntimeError
        except RuntimeError:
            pass
        with transaction.atomic():
            return emit(install, EventKind.PROGRESS, "committed after").pk

    async def scenario():
        comm = communicator(f"/ws/installs/{scene.running.pk}/", viewer)
        assert (await comm.connect())[0]
        event_id = await database_sync_to_async(rollback_then_commit, thread_sensitive=True)()
        got = await receive_events(comm, 1, timeout=2)
        assert [e["id"] for e in got] == [event_id]
        await comm.disconnect()

    run(scenario)


def test_an_event_whose_live_message_was_dropped_still_arrives(scene, viewer):
    """The sweep: an event stored but never published (as when Redis drops a message) reaches the page."""

    async def scenario():
        comm = communicator(f"/ws/installs/{scene.running.pk}/?after=0", viewer)
        assert (await comm.connect())[0]
        await receive_frame(comm, "replayed")
        (live,) = await database_sync_to_async(emit_events)(scene.running.pk, "published")
        assert [e["id"] for e in await receive_events(comm, 1)] == [live]
        silent = await database_sync_to_async(
            lambda: Event.objects.create(install_id=scene.running.pk, kind=EventKind.PROGRESS, message="unpublished").pk
        )()
        got = await receive_events(comm, 1, timeout=4)
        assert [e["id"] for e in got] == [silent]
        assert await comm.receive_nothing(timeout=1.5)  # and only once
        await comm.disconnect()

    run(scenario)


def test_the_publisher_asks_only_groups_with_a_socket(scene, viewer):
    """Most installs have no page open: their events go to the dashboard only, which the publisher
    learns from Redis in one round trip rather than by sending to every install's empty group."""
    from installs.events import _groups_with_members, install_group

    watched, unwatched = install_group(scene.running.pk), install_group(scene.failed.pk)

    async def scenario():
        layer = get_channel_layer()
        assert await _groups_with_members(layer, [watched, unwatched, "dashboard"]) == set()
        page = communicator(f"/ws/installs/{scene.running.pk}/", viewer)
        board = communicator("/ws/dashboard/", viewer)
        assert (await page.connect())[0] and (await board.connect())[0]
        assert await _groups_with_members(layer, [watched, unwatched, "dashboard"]) == {watched, "dashboard"}
        await page.disconnect()
        assert await _groups_with_members(layer, [watched, unwatched, "dashboard"]) == {"dashboard"}
        await board.disconnect()

    run(scenario)
