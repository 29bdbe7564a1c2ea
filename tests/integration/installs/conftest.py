"""Install engine fixtures: real PostgreSQL (committed transactions, so on_commit really fires),
real Redis and RQ, the fake BMC driver in-process, a TFTP root per test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rq import SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from audit.service import Actor
from core import queues
from installs.batches import request_installs
from inventory.models import OSProfile
from inventory.stock import sync_stock_profiles
from provisioner.bmc.fake import fake_bmc, reset_fakes
from tests import redis_claim
from tests.conftest import make_bmc, make_machine, make_rack, make_site

IMAGE_SHA = "ab" * 32
ROOT = Path(__file__).resolve().parents[3]


def _test_database_url() -> str:
    db = django_settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@contextlib.contextmanager
def manage_process(*args: str, **env: str):
    """A real manage.py process (a worker, the scheduler) against the test database, stopped after."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": _test_database_url(), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def worker_process(*args: str, **env: str):
    """A real RQ worker process (manage.py worker ARGS)."""
    return manage_process("worker", *args, **env)


@contextlib.contextmanager
def control_plane(*worker_args: str, **env: str):
    """The deployed layout without the web server: the scheduler and a worker (manage.py worker ARGS)."""
    with manage_process("scheduler", **env) as scheduler, worker_process(*worker_args, **env) as worker:
        yield scheduler, worker


@pytest.fixture(autouse=True)
def _engine_settings(settings, transactional_db):
    settings.BMC_MIN_INTERVAL_S = 0
    settings.STEP_RETRY_BASE_S = 0.01
    settings.STEP_RETRY_MAX_S = 0.05
    redis_claim.flush()
    reset_fakes()
    yield
    redis_claim.flush()


class BurstWorker(SimpleWorker):
    """The test's in-process worker, without RQ's command channel: nothing sends it commands, and a burst worker
    that ends before its pubsub thread saw the subscription confirmed waits out that thread's 60 s poll when it
    unsubscribes (RQ 3.0 with redis-py 8.2), which made a test take a minute at random."""

    def subscribe(self):
        pass


class Lab:
    """A site with machines on fake BMCs and a real TFTP root, and a way to run the queued jobs."""

    def __init__(self, tmp_path):
        self.tftp_root = tmp_path / "tftp"
        self.tftp_root.mkdir()
        self.site = make_site(slug="lab", tftp_root=str(self.tftp_root), base_url="http://127.0.0.1:8000")
        self.rack = make_rack(self.site, name="r01")
        sync_stock_profiles()
        self.next_u = 1
        self.racks = {self.rack.name: self.rack}

    def machine(self, rack: str = "r01", **kw):
        if rack not in self.racks:
            self.racks[rack] = make_rack(self.site, name=rack)
        machine = make_machine(self.racks[rack], position_u=self.next_u, **kw)
        self.next_u += 1
        make_bmc(machine, driver="fake", address=f"127.0.{machine.pk // 250}.{machine.pk % 250 + 1}")
        machine.refresh_from_db()
        return machine

    def bmc(self, machine):
        return fake_bmc(machine.bmc.address, machine.bmc.port)

    def profile(self, name="debian-12-preseed"):
        return OSProfile.objects.get(name=name)

    def image_profile(self):
        profile, _ = OSProfile.objects.get_or_create(
            name="lab-image",
            defaults={
                "method": "image",
                "kernel": "/memory-os/vmlinuz",
                "initrd": "/memory-os/initrd.img",
                "image_url": "http://127.0.0.1:8000/images/lab.img.gz",
                "image_sha256": IMAGE_SHA,
                "ssh_authorized_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake lab@example",
            },
        )
        return profile

    def install(self, machines, profile=None, **kw):
        batch = request_installs([m.pk for m in machines], profile or self.profile(), Actor.system("test"), **kw)
        installs = list(batch.installs.order_by("pk"))
        return installs[0] if len(installs) == 1 and not kw.get("batch") else installs

    def run_jobs(self, *, scheduled: bool = True, rounds: int = 20) -> int:
        """Run every queued job (and, with ``scheduled``, every delayed one as if its time had come)."""
        names = [queues.DEFAULT_QUEUE, queues.site_queue_name(self.site.slug)]
        total = 0
        for _ in range(rounds):
            moved = self.release_scheduled() if scheduled else 0
            pending = sum(queues.get_queue(n).count for n in names)
            if not pending and not moved:
                return total
            worker = BurstWorker([queues.get_queue(n) for n in names], connection=queues.connection())
            worker.work(burst=True)
            total += pending
        return total

    def release_scheduled(self) -> int:
        moved = 0
        for name in (queues.DEFAULT_QUEUE, queues.site_queue_name(self.site.slug)):
            queue = queues.get_queue(name)
            registry = ScheduledJobRegistry(queue=queue)
            for job_id in registry.get_job_ids():
                registry.remove(job_id)
                queue.enqueue_job(Job.fetch(job_id, connection=queue.connection))
                moved += 1
        return moved

    def per_mac_files(self, machine) -> list[str]:
        mac = machine.pxe_nic.mac.replace(":", "-")
        return sorted(str(p.relative_to(self.tftp_root)) for p in self.tftp_root.rglob(f"*01-{mac}*"))


@pytest.fixture
def lab(tmp_path):
    return Lab(tmp_path)


@pytest.fixture
def running_lab(tmp_path, live_server):
    """The lab's small preset (rack r1 of four machines), its machines calling back to the live server; yields
    the inventory file load_demo reads."""
    state = tmp_path / "lab"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provisioner.lab",
            "--preset",
            "small",
            "--state-dir",
            str(state),
            "--base-url",
            live_server.url,
            "--install-s",
            "0.5",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    inventory = state / "inventory.json"
    deadline = time.monotonic() + 30
    while not inventory.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the lab did not start"
        time.sleep(0.1)
    yield inventory
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    assert not inventory.exists()  # a clean stop removes it


@pytest.fixture
def site_worker(transactional_db):
    """A real worker process for the sites' queues."""
    with worker_process(BMC_MIN_INTERVAL_S="0") as proc:
        yield proc
