"""Redis down at the moment a change commits: the request that made the change still succeeds (it is in
the database), and the sweeper queues the lost work once Redis is back. A Redis restart loses every
queued job, so this is also what happens to work in flight at a restart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from installs import engine, tokens
from installs.models import Install, InstallState, Step, StepKind, StepState
from installs.sweeper import sweep


@pytest.fixture
def redis_of_our_own(private_redis, settings):
    settings.REDIS_URL = private_redis.url  # the queues' connection follows the setting
    return private_redis


def test_an_install_that_ends_while_redis_is_down_is_cleaned_up_when_it_is_back(lab, redis_of_our_own):
    machine = lab.machine()
    install = lab.install([machine])
    lab.run_jobs()
    assert lab.per_mac_files(machine), "the install armed the machine's boot config"
    redis_of_our_own.stop()
    with transaction.atomic():  # the commit's enqueue of the cleanup fails, and must not fail the change
        engine.fail(engine.lock(install.pk), "OperatorTest", "Ended while Redis was down.")
    install.refresh_from_db()
    assert install.state == InstallState.FAILED and install.cleaned_at is None
    assert lab.per_mac_files(machine), "nothing removed it yet"
    redis_of_our_own.start()  # empty: the cleanup job is nowhere
    Install.objects.filter(pk=install.pk).update(finished_at=timezone.now() - timedelta(minutes=2))
    assert sweep()["uncleaned"] == 1
    assert sweep()["uncleaned"] == 0  # one job at a time
    lab.run_jobs()
    install.refresh_from_db()
    assert lab.per_mac_files(machine) == [] and install.cleaned_at is not None
    assert sweep()["uncleaned"] == 0


def test_a_late_cleanup_leaves_the_machines_next_install_alone(lab):
    machine = lab.machine()
    first = lab.install([machine])
    lab.run_jobs()
    engine.cancel(first.pk, actor=engine.SYSTEM)
    Install.objects.filter(pk=first.pk).update(cleaned_at=None)  # as if its cleanup had been lost
    lab.run_jobs()
    second = lab.install([machine])
    lab.run_jobs()
    armed = lab.per_mac_files(machine)
    assert armed
    Install.objects.filter(pk=first.pk).update(cleaned_at=None, finished_at=timezone.now() - timedelta(minutes=2))
    assert sweep()["uncleaned"] == 1
    lab.run_jobs()
    assert lab.per_mac_files(machine) == armed, "the first install's late cleanup removed the second's config"
    assert Install.objects.get(pk=second.pk).state == InstallState.BOOTING
    assert Install.objects.get(pk=first.pk).cleaned_at is not None


def test_a_callback_that_commits_while_redis_is_down_is_answered_ok(lab, client, redis_of_our_own):
    machine = lab.machine()
    install = lab.install([machine])
    lab.run_jobs()
    token = tokens.callback_token(Install.objects.get(pk=install.pk).token_nonce)
    redis_of_our_own.stop()
    response = client.post(f"/i/{token}/events/started")
    assert response.status_code == 200 and response.json()["outcome"] == "booted"  # stored: the installer is told so
    wait = Step.objects.get(install=install, kind=StepKind.WAIT_BOOT)
    assert wait.state == StepState.SUCCEEDED
    redis_of_our_own.start()
    Step.objects.filter(pk=wait.pk).update(finished_at=timezone.now() - timedelta(minutes=2))
    assert sweep()["revived"] == 1
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.INSTALLING
