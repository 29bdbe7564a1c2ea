"""Redis failing over to its replica in the middle of installs, as a Sentinel- or keepalived-managed pair does
(docs/deploy.md, High availability): a primary and a replica of our own, a forwarder on loopback playing the
virtual IP, and the deployed processes (scheduler, control worker, site worker) pointed at it. The primary dies,
the replica is promoted and the address moves: every install still finishes, none twice."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import redis
from django.utils import timezone

from installs.models import ACTIVE_STATES, Install, InstallState, Step

from .conftest import manage_process, worker_process
from .test_sites_and_links import assert_ran_once, image_profile, start, states, until, worker_kinds

pytestmark = pytest.mark.slow

PRIMARY_PORT, REPLICA_PORT = 16420, 16421


class RedisServer:
    def __init__(self, port: int, directory, replica_of: int | None = None):
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if replica_of:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.port = port
        self.proc = subprocess.Popen(argv, cwd=directory, stdout=subprocess.DEVNULL, start_new_session=True)
        self.client = redis.Redis(port=port)
        assert until(self.up, seconds=10), f"redis-server did not start on {port}"

    def up(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def redis_pair(tmp_path):
    (tmp_path / "primary").mkdir()
    (tmp_path / "replica").mkdir()
    primary = RedisServer(PRIMARY_PORT, tmp_path / "primary")
    replica = RedisServer(REPLICA_PORT, tmp_path / "replica", replica_of=PRIMARY_PORT)
    assert until(lambda: replica.client.info("replication").get("master_link_status") == "up", seconds=20)
    yield primary, replica
    for server in (primary, replica):
        server.client.close()
        server.kill()


def test_installs_finish_when_redis_fails_over_to_its_replica(lab, settings, redis_pair):
    from tests.tcp_proxy import TcpProxy

    primary, replica = redis_pair
    with TcpProxy(("127.0.0.1", primary.port)).start() as vip:
        url = f"redis://127.0.0.1:{vip.port}/0"
        settings.REDIS_URL = url  # this process (the machines' callbacks) queues through the address too
        env = {"REDIS_URL": url, "SWEEP_INTERVAL_S": "2", "SWEEP_LOST_JOB_AFTER_S": "5"}
        with (
            manage_process("scheduler", **env),
            worker_process("--control-only", **env),
            worker_process("--site", lab.site.slug, "--no-default", **env),
        ):
            assert until(lambda: len(primary.client.smembers("rq:workers")) == 2, seconds=60)
            machines = [lab.machine() for _ in range(4)]
            installs = start(machines, image_profile())
            worker_steps = Step.objects.filter(install__in=installs, kind__in=worker_kinds(), attempts__gt=0)
            # Mid-run: some work done, much left (the machines have not answered yet).
            assert until(lambda: worker_steps.count() >= 4)

            primary.kill()
            replica.client.execute_command("REPLICAOF", "NO", "ONE")
            vip.retarget(("127.0.0.1", replica.port))
            moved_at, t0 = timezone.now(), time.monotonic()

            assert until(lambda: worker_steps.filter(finished_at__gt=moved_at).exists(), answer={})
            recovered_s = time.monotonic() - t0
            done = until(lambda: not Install.objects.filter(state__in=ACTIVE_STATES).exists(), answer={})
            finished_s = time.monotonic() - t0
            assert done, states(lab.site.slug)
            print(f"redis failover: first step {recovered_s:.1f} s after, every install done {finished_s:.1f} s after")
    assert states(lab.site.slug) == {InstallState.SUCCEEDED: 4}
    assert_ran_once(installs)
    assert Install.objects.filter(machine__in=machines).count() == 4
