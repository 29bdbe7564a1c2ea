"""The built zipapp, run as a process in sandbox mode: a whole image plan from register to reboot."""

import glob
import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from provisioner.agent import build
from tests.unit.agent import servers
from tests.unit.agent.conftest import MIB
from tests.unit.agent.servers import TOKEN, Plan

MAC = "52:54:00:12:34:56"


def _older_pythons() -> list[str]:
    """Memory OSes ship older Pythons (RHEL 9: 3.9, Ubuntu 22.04: 3.10): the archive is run with those found."""
    found = []
    for version in ("3.9", "3.10"):
        candidates = [
            shutil.which(f"python{version}"),
            *glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python3")),
        ]
        for candidate in filter(None, candidates):
            # A pyenv shim exists whether or not it can run; only an interpreter that answers counts.
            if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
                found.append(candidate)
                break
    return found


PYTHONS = [sys.executable, *_older_pythons()]


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    return build.build(tmp_path_factory.mktemp("dist") / "provisioner-agent.pyz")


@pytest.fixture
def lab(tmp_path):
    sandbox = tmp_path / "sandbox"
    (sandbox / "disks").mkdir(parents=True)
    (sandbox / "machine.json").write_text(json.dumps({"nics": [{"name": "eno1", "mac": MAC, "link": True}]}))
    with open(sandbox / "disks" / "sda.img", "wb") as f:
        f.truncate(16 * MIB)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    started = []
    yield sandbox, token_file, started
    for server in started:
        server.shutdown()
        server.server_close()


def _agent(python, pyz, url, sandbox, token_file, *extra, **popen):
    argv = [python, "-I", str(pyz), "--url", url, "--token-file", str(token_file), "--sandbox", str(sandbox),
            "--poll-wait", "1", "--backoff-base", "0.05", "--backoff-cap", "0.2", "--cmdline", os.devnull,
            *extra]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={}, **popen)


@pytest.mark.parametrize("python", PYTHONS)
def test_zipapp_installs_an_image_in_the_sandbox(pyz, lab, python):
    sandbox, token_file, started = lab
    raw = random.Random(1).randbytes(2 * MIB) + bytes(MIB)
    files = servers.ImageFiles(files={"/images/web.img.gz": gzip.compress(raw, 1)}, cuts=[MIB // 2])
    image_server, image_url = servers.image_server(files)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 ops@example"
    plan = Plan(macs=(MAC,), tasks=[
        {"id": "1", "kind": "wipe_disks", "params": {"disks": ["/dev/sda"]}},
        {"id": "2", "kind": "write_image", "params": {"url": image_url + "/images/web.img.gz", "disk": "/dev/sda",
                                                      "sha256": hashlib.sha256(raw).hexdigest(), "compression": "gz"}},
        {"id": "3", "kind": "configure_network", "params": {"mac": MAC, "style": "netplan", "address": "10.0.0.5",
                                                            "prefix": 24, "gateway": "10.0.0.1"}},
        {"id": "4", "kind": "set_hostname", "params": {"hostname": "web01.example.net"}},
        {"id": "5", "kind": "ssh_keys", "params": {"user": "root", "keys": [key]}},
        {"id": "6", "kind": "run_script", "params": {"script": "echo from-script", "timeout_s": 10}},
        {"id": "7", "kind": "inventory", "params": {}},
        {"id": "8", "kind": "reboot", "params": {}},
    ])  # fmt: skip
    plane, url = servers.control_plane(plan)
    started += [image_server, plane]

    proc = _agent(python, pyz, url, sandbox, token_file)
    out, err = proc.communicate(timeout=30)

    assert proc.returncode == 0, err
    assert {tid: bodies[0]["ok"] for tid, bodies in plan.results.items()} == {str(i): True for i in range(1, 9)}
    assert (sandbox / "disks" / "sda.img").read_bytes()[: len(raw)] == raw
    assert files.requests[1]["range"] == f"bytes={MIB // 2}-"
    assert f'macaddress: "{MAC}"' in (sandbox / "target/etc/netplan/50-provisioner-enx525400123456.yaml").read_text()
    assert (sandbox / "target/root/.ssh/authorized_keys").read_text() == key + "\n"
    assert (sandbox / "reboot-requested").exists()
    assert plan.results["6"][0]["output"] == "from-script"
    assert json.loads(plan.results["7"][0]["output"])["disks"][0]["path"] == "/dev/sda"
    percents = [body["percent"] for tid, body in plan.progress if tid == "2"]
    assert percents == sorted(percents) and percents[-1] == 100
    assert TOKEN not in out + err
    assert (sandbox / "state" / "journal-12.jsonl").exists()


def test_kernel_command_line_and_sigterm_then_restart(pyz, lab, tmp_path):
    sandbox, _, started = lab
    marker = tmp_path / "ran"
    task = {"id": "s1", "kind": "run_script", "params": {"script": f"echo x >> {marker}\nsleep 30", "timeout_s": 60}}
    plan = Plan(macs=(MAC,), tasks=[task])
    plane, url = servers.control_plane(plan)
    started.append(plane)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f'initrd=initrd.img provisioner.url="{url}" provisioner.token={TOKEN} quiet\n')
    argv = [sys.executable, "-I", str(pyz), "--sandbox", str(sandbox), "--cmdline", str(cmdline), "--poll-wait", "1"]

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={})
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 5, err
    assert plan.registered and plan.results == {}

    # Restarted, the agent gets the same task id back: it was destructive and started, so it is not rerun.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={})
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert plan.results["s1"][0]["reason"] == "TaskInterrupted"
    assert marker.read_text() == "x\n"
    assert TOKEN not in err
