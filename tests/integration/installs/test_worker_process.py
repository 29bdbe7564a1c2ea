"""The worker process as a service manager sees it: it stops promptly on SIGTERM (systemd waits, then
kills it, and a job killed is a step the sweeper has to recover)."""

import signal
import time

from core import queues

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


def test_a_worker_whose_database_connection_was_killed_reconnects(lab):
    from django.db import connection

    from installs.models import PeriodicRun

    def runs():
        return PeriodicRun.objects.filter(name="sweep").values_list("runs", flat=True).first() or 0

    with worker_process():
        queues.get_queue().enqueue("installs.periodic.run", "sweep")
        assert wait(lambda: runs() == 1)
        with connection.cursor() as cursor:  # a failover, a restart, an admin's pg_terminate_backend
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        queues.get_queue().enqueue("installs.periodic.run", "sweep")
        assert wait(lambda: runs() == 2), "the job after the lost connection failed"
        queues.get_queue().enqueue("installs.periodic.run", "sweep")
        assert wait(lambda: runs() == 3)


def wait(predicate, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_worker_outlives_a_redis_restart_in_the_middle_of_a_job(lab, private_redis, tmp_path):
    from rq import Queue

    client = private_redis.client()
    with worker_process(REDIS_URL=private_redis.url, WORKER_HEARTBEAT_S="1") as proc:
        assert wait(lambda: client.smembers("rq:workers"))
        Queue(queues.DEFAULT_QUEUE, connection=client).enqueue("tests.integration.installs.jobs.nap", 3)
        time.sleep(1)  # the job is running
        private_redis.stop()
        time.sleep(4)  # the job ends while Redis is away: RQ cannot record it
        private_redis.start()
        client = private_redis.client()
        marker = tmp_path / "ran"
        Queue(queues.DEFAULT_QUEUE, connection=client).enqueue("tests.integration.installs.jobs.touch", str(marker))
        assert wait(marker.exists, 30), "no worker took the job after Redis came back"
        assert proc.poll() is None, "the worker process quit on the Redis error"
