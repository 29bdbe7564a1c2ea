"""The real agent program, in sandbox mode, against daphne serving the real ASGI application (as deployed:
progress reports are answered in front of Django) with a real RQ worker process: an image install from the
per-MAC boot config to the installed OS's callback."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from installs.models import Event, Install, InstallState
from inventory.models import OSProfile, Site
from tests.integration.installs.conftest import worker_process
from tests.servers import Daphne

ROOT = Path(__file__).resolve().parents[3]
IMAGE = (b"provisioner-e2e-image " * 4096)[: 96 * 1024] + os.urandom(32 * 1024)  # 128 KiB


class ImageServer:
    """Serves the disk image (gzip) with Range support; can cut the first download midway."""

    def __init__(self, payload: bytes, cut_first_at: int | None = None):
        self.payload = payload
        self.cut_first_at = cut_first_at
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.headers.get("Range", ""))
                start = 0
                if rng := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
                    start = int(rng.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}")
                else:
                    self.send_response(200)
                body = outer.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if outer.cut_first_at is not None and len(outer.requests) == 1:
                    self.wfile.write(body[: outer.cut_first_at])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the network drops mid-download
                    return
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/images/e2e.img.gz"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def worker(lab):
    """A real RQ worker process serving the lab site's queue against the test database."""
    with worker_process("--site", lab.site.slug) as proc:
        yield proc


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def state(install) -> str:
    return Install.objects.get(pk=install.pk).state


def boot_from_network(lab, machine, sandbox: Path) -> subprocess.Popen:
    """What the machine's PXE ROM and the memory OS do: read the per-MAC pxelinux config from the
    TFTP root, take its kernel command line, start the agent with it."""
    config = lab.tftp_root / "pxelinux.cfg" / ("01-" + machine.pxe_nic.mac.replace(":", "-"))
    append = next(line for line in config.read_text().splitlines() if line.strip().startswith("APPEND"))
    cmdline = append.strip().removeprefix("APPEND").strip() + f" BOOTIF=01-{machine.pxe_nic.mac.replace(':', '-')}"
    (sandbox / "disks").mkdir(parents=True)
    (sandbox / "disks" / "vda.img").write_bytes(b"\0" * (1 << 20))
    (sandbox / "machine.json").write_text(json.dumps({"nics": [{"name": "ens3", "mac": machine.pxe_nic.mac}]}))
    (sandbox / "cmdline").write_text(cmdline)
    args = [sys.executable, "-m", "provisioner.agent", "--sandbox", str(sandbox), "--cmdline", str(sandbox / "cmdline")]
    args += ["--poll-wait", "1", "--backoff-base", "0.2", "--backoff-cap", "1", "--log-level", "DEBUG"]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def web(tmp_path):
    """The control plane's web server as deployed (daphne, config.asgi), against the test database."""
    server = Daphne(tmp_path)
    server.start()
    yield server
    server.stop()


def image_profile(url: str, sha256: str) -> OSProfile:
    profile = OSProfile.objects.get(name="memory-os-image")
    profile.image_url, profile.image_sha256, profile.target_disk = url, sha256, ""
    profile.save()
    return profile


def first_boot(sandbox: Path, web, token: str):
    """The installed OS's first boot: call back as the unit the agent left in the target says, or
    (if this agent build writes none) as the control plane documents it."""
    marker = sandbox / "target" / "etc" / "provisioner" / "first-boot"
    if marker.exists():
        url = re.search(r"https?://\S+", marker.read_text()).group(0).strip("'\"")
    else:
        url = f"{web.url}/i/{token}/events/finished"
    urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10).read()


@pytest.mark.parametrize("cut", [None, 16 * 1024], ids=["whole", "network-drops-mid-image"])
def test_real_agent_completes_an_image_install_against_the_live_api(lab, worker, web, tmp_path, cut):
    from installs import tokens

    Site.objects.filter(pk=lab.site.pk).update(base_url=web.url)
    lab.site.refresh_from_db()
    server = ImageServer(gzip.compress(IMAGE, mtime=0), cut_first_at=cut)
    try:
        machine = lab.machine()
        install = lab.install([machine], image_profile(server.url, hashlib.sha256(IMAGE).hexdigest()))
        wait_for(lambda: state(install) == InstallState.BOOTING, 60, "the install to wait for the machine")
        sandbox = tmp_path / "machine"
        agent = boot_from_network(lab, machine, sandbox)
        assert "provisioner.token=" in (sandbox / "cmdline").read_text()
        try:
            output, _ = agent.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            agent.kill()
            output, _ = agent.communicate()
            raise AssertionError(f"agent did not finish:\n{output[-3000:]}") from None
        assert agent.returncode == 0, output[-3000:]
        nonce = Install.objects.get(pk=install.pk).token_nonce
        boot, callback = tokens.boot_token(nonce), tokens.callback_token(nonce)
        for token in (boot, tokens.agent_token(nonce), callback):
            assert token not in output  # the agent never logs a token
        # The installed OS calls back with the callback token the registration handed over, not the boot credential.
        marker = (sandbox / "target" / "etc" / "provisioner" / "first-boot").read_text()
        assert f"/i/{callback}/events/finished" in marker and boot not in marker
        wait_for(lambda: state(install) == InstallState.VERIFYING, 60, "the install to reboot into its OS")
        first_boot(sandbox, web, callback)
        wait_for(lambda: state(install) == InstallState.SUCCEEDED, 60, "the install to succeed")
    finally:
        server.close()

    written = (sandbox / "disks" / "vda.img").read_bytes()[: len(IMAGE)]
    assert hashlib.sha256(written).hexdigest() == hashlib.sha256(IMAGE).hexdigest()
    netplan = "".join(p.read_text() for p in (sandbox / "target").rglob("*.yaml"))
    assert machine.pxe_nic.mac in netplan
    percents = [
        e.data["percent"]
        for e in Event.objects.filter(install=install, kind="progress", data__task="write_image").order_by("id")
    ]
    assert percents and percents == sorted(percents) and percents[-1] == 100
    assert lab.per_mac_files(machine) == []
    if cut is not None:
        assert server.requests[0] == "" and server.requests[1].startswith("bytes=")  # resumed, not restarted
    machine.refresh_from_db()
    assert machine.status == "deployed" and machine.facts["nics"][0]["mac"] == machine.pxe_nic.mac


def test_a_corrupt_image_fails_the_install_with_its_reason(lab, worker, web, tmp_path):
    Site.objects.filter(pk=lab.site.pk).update(base_url=web.url)
    server = ImageServer(gzip.compress(IMAGE, mtime=0))
    try:
        machine = lab.machine()
        install = lab.install([machine], image_profile(server.url, "0" * 64))
        wait_for(lambda: state(install) == InstallState.BOOTING, 60, "the install to wait for the machine")
        agent = boot_from_network(lab, machine, tmp_path / "machine")
        output, _ = agent.communicate(timeout=120)
    finally:
        server.close()
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "ImageChecksumMismatch"), output[-2000:]
    wait_for(lambda: lab.per_mac_files(machine) == [], 30, "the per-MAC config to be removed")
