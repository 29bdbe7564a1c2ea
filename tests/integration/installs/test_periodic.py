"""Periodic work keeps running: the sweeper and the power sync fire every period, in real processes,
for as long as the control plane runs. A test that calls sweep() directly cannot see a sweeper that
runs once and never again; these start the processes as deployed and watch them over several periods."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import timedelta

from django.utils import timezone
from rq import Queue, Worker

from core import queues
from installs.models import Install, InstallState, PeriodicRun, Step, StepKind, StepState

from .conftest import control_plane, manage_process, worker_process


def wait_until(predicate, seconds: float, interval: float = 0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def test_a_deadline_set_long_after_start_still_fires(lab):
    machine = lab.machine()
    install = lab.install([machine])
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.BOOTING
    wait = Step.objects.get(install=install, kind=StepKind.WAIT_BOOT)
    assert wait.state == StepState.WAITING
    Step.objects.filter(pk=wait.pk).update(deadline_at=timezone.now() + timedelta(hours=1))
    with control_plane(SWEEP_INTERVAL_S="1"):
        time.sleep(4)  # several sweeps' worth: the first ones have run and found nothing
        Step.objects.filter(pk=wait.pk).update(deadline_at=timezone.now() + timedelta(seconds=1))
        failed = wait_until(
            lambda: Install.objects.filter(pk=install.pk, state=InstallState.FAILED).exists(), seconds=15
        )
    install.refresh_from_db()
    assert failed, f"the deadline passed 14 s ago and the install is still {install.state}"
    assert install.failure_reason == "BootTimeout"


def sweeps() -> int:
    return PeriodicRun.objects.filter(name="sweep").values_list("runs", flat=True).first() or 0


def test_each_period_runs_once_however_many_schedulers_and_workers(lab):
    env = {"SWEEP_INTERVAL_S": "1"}
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(manage_process("scheduler", **env))
        for _ in range(3):
            stack.enter_context(worker_process(**env))
        assert wait_until(lambda: sweeps() >= 2, 30), "the sweeper never ran"
        first, started = sweeps(), time.time()
        time.sleep(8)
        ran, periods = sweeps() - first, int(time.time() - started)
    assert periods - 2 <= ran <= periods + 1, f"{ran} sweeps in {periods} one-second periods"


def test_scheduler_and_workers_carry_on_after_a_redis_restart(lab, private_redis, tmp_path):
    env = {"REDIS_URL": private_redis.url, "SWEEP_INTERVAL_S": "1", "WORKER_HEARTBEAT_S": "1"}
    with control_plane(**env) as (scheduler, worker):
        assert wait_until(lambda: sweeps() >= 2, 30), "the sweeper never ran"
        private_redis.stop()
        time.sleep(3)
        private_redis.start()  # empty: every queued and scheduled job is gone
        before = sweeps()
        assert wait_until(lambda: sweeps() >= before + 3, 30), "the sweeper stopped with the Redis restart"
        marker = tmp_path / "delayed-job-ran"
        Queue(queues.DEFAULT_QUEUE, connection=private_redis.client()).enqueue_in(
            timedelta(seconds=1), "tests.integration.installs.jobs.touch", str(marker)
        )
        assert wait_until(marker.exists, 20), "a job delayed after the restart never reached its queue"
        workers = wait_until(lambda: Worker.all(connection=private_redis.client()), 10)
        assert len(workers) == 1, "the worker is working but no longer registered"
        assert scheduler.poll() is None and worker.poll() is None


def test_a_scheduler_killed_outright_hands_over_the_delayed_jobs(lab, tmp_path):
    lock = "rq:scheduler-lock:default"
    with worker_process(), manage_process("scheduler") as first:
        assert wait_until(lambda: (queues.connection().get(lock) or b"").startswith(b"provisioner-scheduler:"), 30)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        with manage_process("scheduler"):
            marker = tmp_path / "delayed-job-ran"
            queues.get_queue().enqueue_in(timedelta(seconds=1), "tests.integration.installs.jobs.touch", str(marker))
            # RQ's own lock would hold the queue for a minute; a silent scheduler of ours is replaced sooner.
            assert wait_until(marker.exists, 40), "the delayed job waited for the dead scheduler's lock"
