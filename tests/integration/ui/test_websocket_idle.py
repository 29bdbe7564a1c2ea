"""An idle browser tab keeps its websocket: a dashboard socket on a real daphne, silent for over a minute,
is neither closed nor logged as an error, and still gets the next event."""

from __future__ import annotations

import json
import time

import pytest
from django.db import transaction
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from installs.events import emit
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
