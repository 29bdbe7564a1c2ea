"""What a browser (or anyone with a viewer's session) sends a websocket cannot break it: frames that are
not the one message understood are ignored, whatever their size, depth or numbers; and a socket open for
longer than the channel layer remembers its group keeps receiving live events."""

from __future__ import annotations

import pytest
from channels.layers import get_channel_layer

from installs import consumers
from installs.events import install_group

from .conftest import user_with_role
from .test_consumers import communicator, emit_events, receive_events, run, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def viewer(db):
    return session_cookie(user_with_role("viewer", "watcher"))


HOSTILE_FRAMES = [
    '{"after": 1e400}',  # a number past a float: int() raised OverflowError
    '{"after": 99999999999999999999999999}',  # past the id column: the query failed
    '{"after": -5}',
    "[" * 100000 + "]" * 100000,  # nested past the parser's recursion limit
    '{"after": "²"}',
    "not json",
    '"a string"',
    "x" * 200000,
]


def test_hostile_frames_are_ignored_and_the_socket_keeps_working(scene, viewer):
    install = scene.running.pk

    async def scenario():
        comm = communicator(f"/ws/installs/{install}/", viewer)
        connected, _ = await comm.connect()
        assert connected
        for frame in HOSTILE_FRAMES:
            await comm.send_to(text_data=frame)
        await comm.send_to(bytes_data=b"\x00\x01")
        assert await comm.receive_nothing(timeout=0.5)
        from channels.db import database_sync_to_async

        [event_id] = await database_sync_to_async(emit_events)(install, "still here")
        assert [e["id"] for e in await receive_events(comm, 1)] == [event_id]
        await comm.disconnect()

    run(scenario)


def test_a_huge_id_in_the_query_string_is_no_id(scene, viewer):
    async def scenario():
        comm = communicator(f"/ws/installs/{scene.running.pk}/?after=99999999999999999999999999", viewer)
        connected, _ = await comm.connect()
        assert connected
        assert await comm.receive_nothing(timeout=0.5)
        await comm.disconnect()

    run(scenario)


def test_a_socket_rejoins_its_group_before_the_layer_forgets_it(scene, viewer, settings, monkeypatch):
    layer = settings.CHANNEL_LAYERS["default"]
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "group_expiry": 2}}}
    monkeypatch.setattr(consumers, "GROUP_REJOIN_S", 0.5)
    monkeypatch.setattr(consumers, "SWEEP_IDLE_S", 0.5)
    install = scene.running.pk

    async def scenario():
        import asyncio

        comm = communicator(f"/ws/installs/{install}/", viewer)
        connected, _ = await comm.connect()
        assert connected
        await asyncio.sleep(4)  # twice the layer's memory of the membership
        # Not in the database: only the live path can deliver it.
        live = {"id": 10**12, "install": install, "kind": "progress", "message": "live only"}
        await get_channel_layer().group_send(install_group(install), {"type": "install.events", "events": [live]})
        assert [e["id"] for e in await receive_events(comm, 1)] == [10**12]
        await comm.disconnect()

    run(scenario)
