"""docs/examples/install-rack.py, run as a person would (a subprocess with only the standard library) against a
live server whose machines are the lab's simulated datacentre, installed by a real worker process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.management import call_command

from accounts.api_tokens import create_token
from audit.service import Actor
from installs.models import Batch, Install, InstallState
from inventory.models import Machine
from tests.conftest import make_machine, make_rack, make_site
from tests.integration.installs.conftest import ROOT, control_plane
from tests.integration.ui.conftest import user_with_role

SCRIPT = ROOT / "docs" / "examples" / "install-rack.py"


def run_script(url: str, key: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    # -I -S: no site-packages and no PYTHON* variables, so that anything beyond the standard library fails.
    return subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), "--url", url, *args],
        env={"PATH": os.environ["PATH"], "PROVISIONER_TOKEN": key},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def lab_control_plane(transactional_db):
    """The scheduler and a worker: one batch's power-ons in a rack are staggered, by jobs enqueued for later."""
    with control_plane(BMC_MIN_INTERVAL_S="0") as processes:
        yield processes


def test_the_example_installs_a_lab_rack_and_waits_for_every_install(running_lab, lab_control_plane, live_server):
    call_command("load_demo", "--lab-inventory", str(running_lab))
    rack = list(Machine.objects.filter(rack__site__slug="lab", rack__name="r1").values_list("hostname", flat=True))
    assert len(rack) == 4
    _, key = create_token(user_with_role("technician", "rack-robot"), "rack script", actor=Actor.system("test"))

    done = run_script(live_server.url, key, "lab/r1", "lab-demo-image", "--deadline", "180", "--poll", "0.5")

    assert done.returncode == 0, (done.stdout, done.stderr)
    batch = Batch.objects.get()
    installs = list(Install.objects.filter(batch=batch).select_related("machine"))
    assert sorted(i.machine.hostname for i in installs) == sorted(rack)
    assert all(i.state == InstallState.SUCCEEDED for i in installs), [(i.machine.hostname, i.state) for i in installs]
    assert batch.created_by_label == "rack-robot"
    for install in installs:  # the outcome table: one line per machine
        assert f"{install.machine.hostname:<24} install {install.pk:<8} succeeded" in done.stdout, done.stdout
    assert "4 succeeded, 0 did not" in done.stdout
    assert key not in done.stdout + done.stderr


def test_the_example_says_why_it_was_refused_and_exits_2(live_server, transactional_db):
    make_machine(make_rack(make_site(slug="dc1", name="DC 1"), name="r07"), hostname="node-01", position_u=1)
    _, key = create_token(user_with_role("viewer", "reader"), "rack script", actor=Actor.system("test"))
    site, rack = "dc1", "r07"

    viewer = run_script(live_server.url, key, f"{site}/{rack}", "debian-12-preseed")
    assert viewer.returncode == 2 and "This needs the technician role." in viewer.stderr, viewer.stderr
    assert not Batch.objects.exists()

    empty = run_script(live_server.url, key, f"{site}/no-such-rack", "debian-12-preseed")
    assert empty.returncode == 2 and f"no machine in rack {site}/no-such-rack" in empty.stderr

    bad = run_script(live_server.url, "prv_nonsense", f"{site}/{rack}", "debian-12-preseed")
    assert bad.returncode == 2 and "401" in bad.stderr and "prv_nonsense" not in bad.stderr
