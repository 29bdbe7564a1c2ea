"""`make run` as a newcomer meets it: a terminal command typed beside it reaches its stack, and a second
one says which port is taken instead of failing with a bare error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import ROOT, free_port

pytestmark = pytest.mark.slow


def clean_env(var_dir: Path, **extra: str) -> dict:
    """A terminal's environment: none of the settings the test run has."""
    env = {k: v for k, v in os.environ.items() if k not in ("PROVISIONER_DEV", "DATABASE_URL", "REDIS_URL", "DEBUG")}
    return {**env, "PROVISIONER_VAR_DIR": str(var_dir), **extra}


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def make_run(tmp_path):
    var_dir = tmp_path / "var"
    env = clean_env(var_dir, PROVISIONER_LAB="0")
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "scripts/run.py", "--port", str(free_port())],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while "provisioner is running" not in (tmp_path / "run.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()
        time.sleep(0.5)
    yield var_dir, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)


def test_manage_py_beside_make_run_uses_its_database_and_redis(make_run):
    var_dir, proc = make_run
    terminal = clean_env(var_dir)
    listed = manage(terminal, "installs")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    started = manage(terminal, "install", "demo-r01-01", "--profile", "debian-12-preseed")
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 60
    while "booting" not in (listed := manage(terminal, "installs").stdout):
        assert time.monotonic() < deadline, f"make run's worker never picked the install up:\n{listed}"
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    assert not (var_dir / "run.env").exists()
    gone = manage(terminal, "installs")
    assert gone.returncode == 1 and "Traceback" not in gone.stderr
    assert "PROVISIONER_DEV=1" in gone.stderr  # says what is missing, in one line


def test_a_second_make_run_names_the_port_that_is_taken(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        base = held.getsockname()[1]
        env = clean_env(tmp_path / "var", LAB_PORT_BASE=str(base))
        done = subprocess.run(
            [sys.executable, "scripts/run.py", "--port", str(free_port())],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode != 0
    assert f"port {base} is in use" in done.stderr and f"LAB_PORT_BASE={base + 100} make run" in done.stderr
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "scripts/run.py", "--port", str(port)],
            cwd=ROOT, env=clean_env(tmp_path / "var", PROVISIONER_LAB="0"), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode != 0 and f"TCP port {port} (the dashboard) is in use" in done.stderr
    assert f"PORT={port + 1} make run" in done.stderr


def test_make_runs_lab_installs_a_machine_with_progress_through_the_one_progress_path(tmp_path):
    """The demo on SQLite: a lab machine PXE-boots the real agent, which reports progress to daphne's
    progress route (the path production takes on PostgreSQL), and the install succeeds."""
    var_dir = tmp_path / "var"
    log_path = tmp_path / "run.log"
    port = free_port()
    env = clean_env(var_dir, LAB_PORT_BASE=str(free_port()))
    proc = subprocess.Popen(
        [sys.executable, "scripts/run.py", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while "provisioner is running" not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        terminal = clean_env(var_dir)
        started = manage(terminal, "install", "lab-r1-01", "--profile", "lab-demo-image")
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 240
        while True:
            listed = manage(terminal, "installs", "--all").stdout
            row = next((line for line in listed.splitlines() if "lab-r1-01" in line), "")
            if "succeeded" in row or "failed" in row:
                break
            assert time.monotonic() < deadline, f"the lab install did not end:\n{listed}"
            time.sleep(2)
        assert "succeeded" in row, row
        query = (
            "from installs.models import Event, Install; i = Install.objects.get(machine__hostname='lab-r1-01'); "
            "print(Event.objects.filter(install=i, kind='progress').count()); "
            "print(sorted(i.steps.get(kind='verify_ssh').result.get('checks', {'skipped': 0}).items()))"
        )
        shown = manage(terminal, "shell", "-c", query)
        assert shown.returncode == 0, shown.stderr
        progress, checks = shown.stdout.strip().splitlines()[-2:]
        assert int(progress) > 0, shown.stdout  # the agent's reports reached the database
        # The SSH check ran through the lab's jump host and passed (it used to be skipped: no jump host).
        assert checks == "[('hostname', True), ('nic', True)]", shown.stdout
        assert "Traceback" not in log_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
