"""A browser tab keeps its websocket for as long as it is open: a dashboard socket on a real daphne, silent
for over a minute, is neither closed nor logged as an error and still gets the next event; and sockets
open across a Redis restart stay open and get live events again once Redis is back."""

from __future__ import annotations

import json
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from installs.events import emit, install_group
from installs.models import EventKind, Install
from tests.servers import Daphne

from .conftest import user_with_role

pytestmark = pytest.mark.slow

IDLE_S = 70


@pytest.fixture
def daphne(transactional_db, tmp_path):
    server = Daphne(tmp_path)
    server.start()
    yield server
    server.stop()


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def test_an_idle_dashboard_socket_stays_open_for_over_a_minute(daphne, scene):
    cookie = session_cookie(user_with_role("viewer"))
    url = f"ws://127.0.0.1:{daphne.port}/ws/dashboard/"
    with connect(url, additional_headers={"Cookie": f"sessionid={cookie}"}, origin=daphne.url) as socket:
        started = time.monotonic()
        while time.monotonic() - started < IDLE_S:
            try:
                socket.recv(timeout=IDLE_S - (time.monotonic() - started))
            except TimeoutError:
                break
            except ConnectionClosed as exc:
                pytest.fail(f"closed after {time.monotonic() - started:.1f} s idle: {exc}")
        install = Install.objects.first()
        with transaction.atomic():
            event = emit(install, EventKind.PROGRESS, "after a long silence")
        frame = json.loads(socket.recv(timeout=15))
    assert [e["id"] for e in frame["events"]] == [event.pk]
    log = daphne.log.read_text()
    assert "Traceback" not in log and "Timeout reading" not in log, log[-3000:]


def test_open_sockets_survive_a_redis_restart_and_get_live_events_again(
    transactional_db, tmp_path, scene, private_redis, settings
):
    server = Daphne(tmp_path, REDIS_URL=private_redis.url)
    server.start()
    layer = settings.CHANNEL_LAYERS["default"]
    hosts = [{**layer["CONFIG"]["hosts"][0], "address": private_redis.url}]
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": hosts}}}
    cookie = session_cookie(user_with_role("viewer"))
    install = scene.running.pk
    try:
        url = f"ws://127.0.0.1:{server.port}/ws/installs/{install}/"
        with connect(url, additional_headers={"Cookie": f"sessionid={cookie}"}, origin=server.url) as socket:
            time.sleep(1)
            private_redis.stop()
            time.sleep(3)
            private_redis.start()  # empty: every group membership is gone
            time.sleep(6)  # the consumers notice, wait, and join their groups again
            # Not in the database: only the live path can deliver it.
            live = {"id": 10**12, "install": install, "kind": "progress", "message": "live again"}
            async_to_sync(get_channel_layer().group_send)(
                install_group(install), {"type": "install.events", "events": [live]}
            )
            while True:
                try:
                    frame = json.loads(socket.recv(timeout=15))
                except ConnectionClosed as exc:
                    pytest.fail(f"the Redis restart closed the socket: {exc}")
                if any(e["id"] == 10**12 for e in frame.get("events", [])):
                    break
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]
