"""What one viewer's socket can make the server hold. An install with a long log (100,000 lines) is
replayed to a socket from its first event, through the real ASGI stack and Redis channel layer, with
tracemalloc counting every allocation of this process (the consumer and its database threads): the
replay reads a page at a time and sends the newest REPLAY_MAX events with a pointer to the log download,
so the peak stays small however long the log is, and whether or not the browser reads what it is sent
(a socket that does not read leaves everything sent in the communicator's queue, as daphne's send
buffer holds it for a browser that does not read)."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest
from django.db import connection

from installs.consumers import REPLAY_CHUNK, REPLAY_MAX
from installs.models import Event, EventKind
from tests.integration.ui.conftest import user_with_role
from tests.integration.ui.test_consumers import communicator, receive_frame, run, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

LOG_LINES = 100_000
# A log line as an installer sends them: a hundred-odd characters.
LINE = "debconf: (Can't locate Term/ReadLine.pm in @INC (you may need to install the Term::ReadLine module)) {n}"
# What the replay may cost this process, all included: REPLAY_MAX events as Python objects and JSON frames
# in the communicator's queue, a page of rows from the database, the ASGI stack's own.
PEAK_BOUND_MB = 16


@pytest.fixture
def long_log(scene):
    install = scene.running
    for start in range(0, LOG_LINES, 10_000):
        Event.objects.bulk_create(
            Event(install=install, kind=EventKind.LOG, message=LINE.format(n=n)) for n in range(start, start + 10_000)
        )
    connection.close()  # the consumer's threads open their own
    ids = Event.objects.filter(install=install).order_by("id").values_list("id", flat=True)
    return install, ids.first(), ids.last()


def replay_peak(install_id: int, cookie: str, *, read: bool) -> tuple[float, dict]:
    """(tracemalloc peak in MB, what the socket got) for a replay from the first event."""

    async def scenario():
        comm = communicator(f"/ws/installs/{install_id}/?after=0", cookie)
        assert (await comm.connect())[0]
        got = {"events": [], "gap": None, "replayed": None}
        if read:
            while got["replayed"] is None:
                frame = await comm.receive_json_from(timeout=30)
                got["events"] += [e["id"] for e in frame.get("events", [])]
                got["gap"] = frame.get("gap", got["gap"])
                got["replayed"] = frame.get("replayed")
        else:  # nothing is read until the replay has sent all it will: every frame stays queued
            queued, steady = -1, 0
            while steady < 5:
                await asyncio.sleep(0.2)
                steady, queued = (
                    (steady + 1, queued) if comm.output_queue.qsize() == queued else (0, comm.output_queue.qsize())
                )
            got["replayed"] = (await receive_frame(comm, "replayed", timeout=30))["replayed"]
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        await comm.disconnect()
        return peak, got

    tracemalloc.start()
    try:
        return run(scenario)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("read", [True, False], ids=["browser reads", "browser does not read"])
def test_replaying_a_100k_line_log_holds_a_bounded_amount(long_log, read):
    install, first, last = long_log
    cookie = session_cookie(user_with_role("viewer", "watcher"))
    peak, got = replay_peak(install.pk, cookie, read=read)
    print(f"\nreplay of {LOG_LINES} log events ({'read' if read else 'not read'}): tracemalloc peak {peak:.1f} MB")
    assert peak < PEAK_BOUND_MB, f"peak {peak:.1f} MB"
    assert got["replayed"] == last
    if read:
        assert len(got["events"]) == REPLAY_MAX and got["events"][-1] == last
        assert got["events"] == sorted(got["events"]) and len(set(got["events"])) == REPLAY_MAX
        assert (got["gap"]["after"], got["gap"]["log"]) == (0, f"/installs/{install.pk}/log.txt")
        assert first <= got["gap"]["upto"] < got["events"][0]
        assert Event.objects.filter(install=install, id__gt=got["gap"]["upto"]).count() == REPLAY_MAX


def test_a_short_replay_is_whole_and_has_no_gap(scene):
    ids = list(
        Event.objects.bulk_create(
            Event(install=scene.running, kind=EventKind.LOG, message=f"line {n}") for n in range(REPLAY_CHUNK * 2 + 7)
        )
    )
    connection.close()
    cookie = session_cookie(user_with_role("viewer", "watcher"))
    peak, got = replay_peak(scene.running.pk, cookie, read=True)
    assert got["gap"] is None
    stored = list(Event.objects.filter(install=scene.running).order_by("id").values_list("id", flat=True))
    assert got["events"] == stored and stored[-1] == ids[-1].pk
