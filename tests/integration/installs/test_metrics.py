"""/metrics during real installs: the series move as a worker process carries an install, as a BMC refuses
its credentials and as the agent reports progress."""

from __future__ import annotations

from asgiref.sync import async_to_sync, sync_to_async

from installs import callbacks, tokens
from installs.models import InstallState
from tests.integration.installs.asgi_client import via_route
from tests.integration.ui.conftest import user_with_role
from tests.scrape import scrape, total, value
from tests.websockets import communicator, session_cookie

from .conftest import worker_process
from .test_periodic import wait_until

PROFILE = "debian-12-preseed"


def state_of(install) -> str:
    install.refresh_from_db()
    return install.state


def test_a_scrape_during_an_install_sees_the_series_move(lab):
    machine = lab.machine()
    queue = f"site-{lab.site.slug}"
    before = scrape()
    assert value(before, "provisioner_installs", state="queued", profile=PROFILE) == 0
    assert total(before, "provisioner_bmc_command_seconds_count") == 0

    install = lab.install([machine])
    waiting = scrape()
    assert state_of(install) in (InstallState.QUEUED, InstallState.PREPARING)  # admitted at once: no caps
    assert value(waiting, "provisioner_installs", state=install.state, profile=PROFILE) == 1
    depth = sum(value(waiting, "provisioner_queue_depth", queue=q) for q in (queue, "default"))
    assert depth >= 1
    assert max(value(waiting, "provisioner_queue_oldest_job_age_seconds", queue=q) for q in (queue, "default")) > 0

    with worker_process("--site", lab.site.slug):
        assert wait_until(lambda: state_of(install) == InstallState.BOOTING, 30), install.state
        booting = scrape()
        assert total(booting, "provisioner_installs", profile=PROFILE) == 1
        assert value(booting, "provisioner_installs", state="booting", profile=PROFILE) == 1
        assert value(booting, "provisioner_queue_depth", queue=queue) == 0
        # The worker's BMC commands, made in another process, are in this process's answer (through Redis).
        assert value(booting, "provisioner_bmc_command_seconds_count", driver="fake", command="power_cycle") >= 1
        assert total(booting, "provisioner_bmc_command_seconds_count", driver="fake") >= 3
        beats = [
            v
            for (n, labels), v in booting.items()
            if n == "provisioner_worker_heartbeat_age_seconds" and queue in dict(labels)["queues"]
        ]
        assert beats and min(beats) < 30
        steps = total(booting, "provisioner_step_duration_seconds_count", state="succeeded")
        assert steps >= 3

        assert callbacks.installer_event(install.pk, "started") == "booted"
        assert callbacks.installer_event(install.pk, "finished") == "finished"
        assert wait_until(lambda: state_of(install) == InstallState.SUCCEEDED, 30), install.state
    done = scrape()
    assert value(done, "provisioner_installs", state="succeeded", profile=PROFILE) == 1
    assert value(done, "provisioner_installs", state="booting", profile=PROFILE) == 0
    assert total(done, "provisioner_step_duration_seconds_count", state="succeeded") > steps
    # Histograms are cumulative: the +Inf bucket holds every finished step of the kind.
    assert total(done, "provisioner_step_duration_seconds_bucket", le="+Inf") == total(
        done, "provisioner_step_duration_seconds_count"
    )


def test_a_refused_bmc_shows_as_a_failure_reason_and_a_bmc_error(lab):
    machine = lab.machine()
    lab.bmc(machine).fault = "auth"
    before = scrape()
    install = lab.install([machine])
    lab.run_jobs()
    assert state_of(install) == InstallState.FAILED
    after = scrape()
    assert value(after, "provisioner_install_failures_total", reason="BmcAuthError") == (
        value(before, "provisioner_install_failures_total", reason="BmcAuthError") + 1
    )
    assert value(after, "provisioner_bmc_errors_total", driver="fake", reason="BmcAuthError") == (
        value(before, "provisioner_bmc_errors_total", driver="fake", reason="BmcAuthError") + 1
    )
    assert value(after, "provisioner_installs", state="failed", profile=PROFILE) == 1


def test_progress_reports_and_websocket_clients_are_counted_where_they_happen(lab):
    machine = lab.machine()
    install = lab.install([machine], lab.image_profile())
    lab.run_jobs()
    facts = {"nics": [{"mac": machine.pxe_nic.mac, "link": True}], "disks": [{"path": "/dev/vda", "size_bytes": 10}]}
    agent_token = callbacks.agent_register(install.pk, facts, boot_credential=True).token
    task = callbacks.agent_next_task(install.pk)["task"]
    before = scrape()
    assert via_route(f"tasks/{task['id']}/progress", {"percent": 10}, agent_token)[0] == 200
    assert via_route(f"tasks/{task['id']}/progress", {"percent": 20}, agent_token)[0] == 200
    assert via_route(f"tasks/{task['id']}/progress", {"percent": 30}, "not-the-token")[0] == 401
    after = scrape()
    ok = "provisioner_agent_progress_reports_total"
    assert value(after, ok, outcome="ok") == value(before, ok, outcome="ok") + 2
    assert value(after, ok, outcome="unauthorized") == value(before, ok, outcome="unauthorized") + 1
    assert tokens.boot_token(install.token_nonce) not in str(after)

    cookie = session_cookie(user_with_role("viewer"))
    gauge = "provisioner_websocket_clients"

    async def scenario():
        idle = value(await sync_to_async(scrape)(), gauge, socket="dashboard")
        sockets = [communicator("/ws/dashboard/", cookie) for _ in range(2)]
        for comm in sockets:
            assert (await comm.connect())[0]
        assert value(await sync_to_async(scrape)(), gauge, socket="dashboard") == idle + 2
        await sockets[0].disconnect()
        assert value(await sync_to_async(scrape)(), gauge, socket="dashboard") == idle + 1
        await sockets[1].disconnect()
        assert value(await sync_to_async(scrape)(), gauge, socket="dashboard") == idle

    async_to_sync(scenario)()
