"""Sites far from the centre, and more than one: real worker processes (manage.py worker --site), machines that
answer at once (tests/simulated_machines.py), PostgreSQL and Redis reached over a slow link (tests/tcp_proxy.py),
and one site's worker stopped while the other's carries on."""

from __future__ import annotations

import signal
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from audit.service import Actor
from core import queues
from installs.batches import request_installs
from installs.models import ACTIVE_STATES, Install, InstallState, Step
from installs.sweeper import sweep
from inventory.models import OSProfile
from tests.conftest import make_rack, make_site
from tests.simulated_machines import answer_waiting
from tests.tcp_proxy import TcpProxy

from .conftest import IMAGE_SHA, worker_process

pytestmark = pytest.mark.slow

DEADLINE_S = 120  # generous: the machine is shared; nothing here measures speed


def image_profile() -> OSProfile:
    return OSProfile.objects.create(
        name="sites-image",
        method="image",
        kernel="/memory-os/vmlinuz",
        initrd="/memory-os/initrd.img",
        image_url="http://127.0.0.1:8000/images/sites.img.gz",
        image_sha256=IMAGE_SHA,
    )


def start(machines, profile) -> list[Install]:
    batch = request_installs([m.pk for m in machines], profile, Actor.system("test"), stagger_s=0)
    return list(batch.installs.all())


def until(predicate, *, answer: dict | None = None, seconds: float = DEADLINE_S, sweeping: bool = False) -> bool:
    """Wait for ``predicate``, answering as the machines of ``answer`` (an install filter) meanwhile, and sweeping
    as the scheduler would when ``sweeping``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        if answer is not None:
            answer_waiting(**answer)
        if sweeping:
            sweep()
        time.sleep(0.1)
    return True


def worker_registered(client=None, count: int = 1):
    return until(lambda: len((client or queues.connection()).smembers("rq:workers")) >= count, seconds=60)


def states(site_slug: str) -> dict[str, int]:
    rows = Install.objects.filter(plan__site__slug=site_slug).values_list("state", flat=True)
    return {s: list(rows).count(s) for s in set(rows)}


def assert_ran_once(installs) -> None:
    """Every worker step of these installs ran exactly once: nothing doubled, no timeout misfired into a retry."""
    attempts = Step.objects.filter(install__in=installs, kind__in=worker_kinds()).values_list("kind", "attempts")
    assert max(n for _, n in attempts) == 1, sorted(attempts)  # 0: a wait for the machine in this method


def worker_kinds() -> list[str]:
    from installs.stepkinds import KINDS, Mover

    return [k for k, spec in KINDS.items() if spec.mover == Mover.WORKER]


def proxied(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = (parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else "") + f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_installs_succeed_over_a_slow_link_to_postgresql_and_redis(lab):
    db, rd = urlsplit(database_url()), urlsplit(settings.REDIS_URL)
    delay = 0.05  # each way: 100 ms for every query and every Redis command
    with (
        TcpProxy((db.hostname, db.port or 5432), delay_s=delay).start() as pg,
        TcpProxy((rd.hostname, rd.port or 6379), delay_s=delay).start() as redis_link,
    ):
        env = {"DATABASE_URL": proxied(database_url(), pg), "REDIS_URL": proxied(settings.REDIS_URL, redis_link)}
        with worker_process("--site", lab.site.slug, "--no-default", **env) as proc:
            assert worker_registered()
            machines = [lab.machine() for _ in range(2)]
            installs = start(machines, image_profile())
            done = until(lambda: not Install.objects.filter(state__in=ACTIVE_STATES).exists(), answer={})
            assert done, states(lab.site.slug)
            assert proc.poll() is None
        assert pg.connections and redis_link.connections, "the worker did not go through the slow link"
    assert states(lab.site.slug) == {InstallState.SUCCEEDED: 2}
    assert_ran_once(installs)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_site_whose_worker_stopped_waits_and_the_other_site_carries_on(lab, tmp_path, settings, stop):
    settings.SWEEP_LOST_JOB_AFTER_S = 5  # this test plays the scheduler's sweeps
    far = make_site(slug="far", tftp_root=str(tmp_path / "far"), base_url="http://127.0.0.1:8000")
    (tmp_path / "far").mkdir()
    lab.racks["far-r01"] = make_rack(far, name="far-r01")
    near_machines = [lab.machine() for _ in range(3)]
    far_machines = [lab.machine(rack="far-r01") for _ in range(3)]
    profile = image_profile()
    # A step the killed worker was running is retried this long after it began.
    with worker_process("--site", "lab", "--no-default"), worker_process(
        "--site", "far", "--no-default", STEP_RUN_TIMEOUT_S="5"
    ) as far_worker:  # fmt: skip
        assert worker_registered(count=2)
        near = start(near_machines, profile)
        far_installs = start(far_machines, profile)
        if stop == signal.SIGKILL:  # in the middle of its work
            assert until(lambda: Step.objects.filter(install__in=far_installs, attempts__gt=0).exists())
        far_worker.send_signal(stop)
        far_worker.wait(timeout=60)

        assert until(lambda: states("lab") == {InstallState.SUCCEEDED: 3}, answer={"plan__site__slug": "lab"})
        assert_ran_once(near)
        # The stopped site's installs wait: none failed, none ended, their work is on their queue.
        assert set(states("far")) <= set(ACTIVE_STATES), states("far")
        far_queue = queues.site_queue("far")
        assert far_queue.count + len(far_queue.scheduled_job_registry) >= 1 or stop == signal.SIGKILL
        assert until(lambda: queues.site_queue("lab").count == 0)  # its cleanups ran too
        sweep()
        assert set(states("far")) <= set(ACTIVE_STATES), "the sweeper gave up on a site whose worker is stopped"

        with worker_process("--site", "far", "--no-default", STEP_RUN_TIMEOUT_S="5"):
            everything = {"plan__site__slug": "far"}
            done = until(lambda: states("far") == {InstallState.SUCCEEDED: 3}, answer=everything, sweeping=True)
            assert done, states("far")
    if stop == signal.SIGTERM:
        assert_ran_once(far_installs)  # a warm shutdown finishes the step it runs: nothing repeated
    assert Install.objects.filter(machine__in=far_machines).count() == 3, "an install was made twice"
