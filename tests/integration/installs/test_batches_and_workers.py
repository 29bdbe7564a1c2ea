"""Batches (caps, stagger, pause by itself) and a worker killed in the middle of a step."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings as django_settings
from django.utils import timezone

from audit.service import Actor
from core import queues
from installs import engine
from installs.batches import set_batch_state
from installs.models import Batch, BatchState, Event, Install, InstallState, Step, StepKind, StepState
from installs.sweeper import sweep
from provisioner.bmc import BootDevice
from provisioner.lab.bmc import LoopbackBmc
from tests import redis_claim
from tests.conftest import make_bmc, make_machine

ROOT = Path(__file__).resolve().parents[3]


def states(installs):
    return [Install.objects.get(pk=i.pk).state for i in installs]


def test_caps_per_site_and_rack_queue_the_rest_and_admit_as_installs_end(lab):
    r01 = [lab.machine("r01") for _ in range(4)]
    r02 = [lab.machine("r02") for _ in range(2)]
    installs = lab.install(r01 + r02, max_per_site=3, max_per_rack=2)
    assert states(installs).count(InstallState.QUEUED) == 3  # 2 from r01 + 1 from r02 admitted (site cap 3)
    admitted = [i for i in installs if Install.objects.get(pk=i.pk).state != InstallState.QUEUED]
    assert sorted(i.plan.machine.rack_id for i in admitted) == sorted([r01[0].rack_id] * 2 + [r02[0].rack_id])
    engine.cancel(admitted[0].pk, actor=Actor.system("test"))
    assert states(installs).count(InstallState.QUEUED) == 2  # a slot freed, one more admitted
    batch = Batch.objects.get(pk=installs[0].batch_id)
    assert batch.state == BatchState.RUNNING


def test_power_ons_in_one_rack_are_staggered(lab):
    machines = [lab.machine("r01") for _ in range(3)]
    installs = lab.install(machines, stagger_s=30, max_per_rack=3)
    lab.run_jobs(scheduled=False)
    powered = [m for m in machines if lab.bmc(m).boots]
    assert len(powered) == 1
    slots = sorted(
        Step.objects.filter(install__in=installs, kind=StepKind.POWER_CYCLE, not_before__isnull=False).values_list(
            "not_before", flat=True
        )
    )
    gaps = [(b - a).total_seconds() for a, b in zip(slots, slots[1:], strict=False)]
    assert len(slots) == 2 and all(29 < g < 31 for g in gaps)
    assert (slots[0] - timezone.now()).total_seconds() > 25
    assert Event.objects.filter(install__in=installs, message__contains="staggered, in").count() == 2
    Step.objects.filter(install__in=installs, kind=StepKind.POWER_CYCLE).update(not_before=timezone.now())
    lab.run_jobs()  # their time comes
    assert all(len(lab.bmc(m).boots) == 1 for m in machines)


def test_batch_pauses_by_itself_when_too_many_fail_and_resumes(lab):
    machines = [lab.machine("r01") for _ in range(6)]
    for m in machines[:2]:
        lab.bmc(m).fault = "auth"
    installs = lab.install(machines, max_per_site=2, max_per_rack=2)
    batch = Batch.objects.get(pk=installs[0].batch_id)
    batch.pause_min_ended = 2
    batch.save()
    lab.run_jobs()
    batch.refresh_from_db()
    assert batch.state == BatchState.PAUSED
    assert "2 of 2 ended installs failed" in batch.pause_reason
    # One more was admitted after the first failure (one is not a trend); nothing after the second.
    assert states(installs).count(InstallState.QUEUED) == 3
    lab.run_jobs()
    assert states(installs).count(InstallState.QUEUED) == 3
    set_batch_state(batch.pk, BatchState.RUNNING, Actor.system("alice"))
    assert states(installs).count(InstallState.QUEUED) == 2
    set_batch_state(batch.pk, BatchState.CANCELLED, Actor.system("alice"), "enough")
    assert set(states(installs)) == {InstallState.FAILED, InstallState.CANCELLED}
    batch.refresh_from_db()
    assert batch.state == BatchState.CANCELLED


def test_a_worker_killed_mid_step_is_recovered_by_the_sweeper(lab, settings):
    """A real worker process is SIGKILLed while a BMC call is in flight; the step is retried."""
    bmc = LoopbackBmc("admin", "pw").start()
    bmc.drop_packets = 1.0  # silent: the worker's call hangs (up to its 60 s timeout) in flight
    try:
        machine = make_machine(lab.rack, position_u=30)
        make_bmc(machine, driver="ipmi", address="127.0.0.1", port=bmc.port, username="admin", password="pw")
        install = lab.install([machine])
        db = django_settings.DATABASES["default"]
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "BMC_TIMEOUT_S": "60",
            "BMC_MIN_INTERVAL_S": "0",
        }
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--site", lab.site.slug, "--no-default", "--burst"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        step = install.steps.get(kind=StepKind.CHECK_BMC)
        deadline = time.monotonic() + 120  # a worker process starting on a busy machine
        while time.monotonic() < deadline:
            step.refresh_from_db()
            if step.state == StepState.RUNNING:
                break
            time.sleep(0.05)
        assert step.state == StepState.RUNNING
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        time.sleep(0.2)
        step.refresh_from_db()
        assert step.state == StepState.RUNNING  # nothing else can know it died...
        assert sweep()["lost_workers"] == 0  # ...until its deadline passes
        Step.objects.filter(pk=step.pk).update(deadline_at=timezone.now())
        bmc.drop_packets = 0.0
        # The dead worker's hold on the BMC expires by its TTL; a test does not wait for that.
        for key in queues.connection().scan_iter(f"provisioner:bmc:lock:127.0.0.1:{bmc.port}"):
            queues.connection().delete(key)
        assert sweep()["lost_workers"] == 1
        assert "the worker running it was lost; retrying" in Event.objects.filter(step=step).last().message
        lab.run_jobs()
        install.refresh_from_db()
        step.refresh_from_db()
        assert install.state == InstallState.BOOTING, [e.message for e in install.events.all()]
        assert (step.state, step.attempts) == (StepState.SUCCEEDED, 2)
        assert bmc.powered_on is True
    finally:
        bmc.stop()


def test_a_step_lost_by_its_worker_too_often_fails_with_a_reason(lab, settings):
    settings.STEP_MAX_ATTEMPTS = 1
    machine = lab.machine()
    install = lab.install([machine])
    step = install.steps.get(kind=StepKind.CHECK_BMC)
    Step.objects.filter(pk=step.pk).update(state=StepState.RUNNING, attempts=1, deadline_at=timezone.now())
    sweep()
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "WorkerLost")


def test_a_lost_job_is_revived_by_the_sweeper(lab):
    machine = lab.machine()
    install = lab.install([machine])
    lab.run_jobs()
    from installs import callbacks

    callbacks.installer_event(install.pk, "started")
    redis_claim.flush()  # Redis lost every queued job
    Step.objects.filter(install=install, kind=StepKind.WAIT_BOOT).update(
        finished_at=timezone.now() - timedelta(minutes=5)
    )
    assert sweep()["revived"] == 1
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.INSTALLING
    assert lab.bmc(machine).boots == [BootDevice.PXE]
