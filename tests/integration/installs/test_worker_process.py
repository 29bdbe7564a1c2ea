"""The worker process as a service manager sees it: it stops promptly on SIGTERM (systemd waits, then
kills it, and a job killed is a step the sweeper has to recover)."""

import signal
import time

from provisioner import queues

from .conftest import worker_process


def test_an_idle_worker_stops_within_seconds_of_sigterm(lab):
    # The shutdown races a thread of the worker's: try it often enough to lose the race if it can be lost.
    took = []
    for _ in range(6):
        with worker_process() as proc:
            deadline = time.monotonic() + 30
            while not queues.connection().smembers("rq:workers") and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=90)
            took.append(time.monotonic() - started)
    assert max(took) < 10, f"seconds from SIGTERM to exit: {[round(t, 1) for t in took]}"
