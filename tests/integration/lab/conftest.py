"""A lab machine with a real loopback BMC, driven by the project's IPMI driver, against a stub control plane
that only records what machines ask and answers the minimum. No database: the real API has its own tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from provisioner import pxe
from provisioner.bmc import get_driver
from provisioner.lab.bmc import LoopbackBmc
from provisioner.lab.image import build_demo_image
from provisioner.lab.machine import LabMachine
from provisioner.pxe.stock import META_DATA_TEMPLATE, stock_profiles

TOKEN = "LabT0ken_abcdefghijklmnop"  # the boot credential in the boot files
AGENT_TOKEN = "LabAgent_abcdefghijklmnop"  # handed over by the registration answer
CALLBACK_TOKEN = "LabCallback_abcdefghijklm"  # in the answer files, and handed over for the first boot
MACS = ["52:54:00:1a:00:01", "52:54:00:1a:00:02"]
BMC_USER, BMC_PASSWORD = "root", "Lab-pw-9Zq!"


class Stub:
    """Records (method, path, headers, body) of every request; answers the agent API and installer files as the
    control plane does: the boot credential registers once and the answer hands over the agent token."""

    def __init__(self, image_dir: Path):
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.tasks: list[dict] = []  # handed out by tasks/next in order, then "finished"
        # A serial plan, as the control plane hands it out: the next task only once the last one's result is in.
        # Handing them all at once would run them side by side (the agent runs what it is given).
        self.in_flight: set[str] = set()
        self.hold_polls = False  # answer tasks/next with "nothing yet", so the agent keeps polling
        self.answers: dict[str, str] = {}  # file name under /i/<token>/ -> text
        self.image_dir = image_dir
        self.boot_spent = False
        self.changed = threading.Condition()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                body = self._body() if method == "POST" else b""
                with stub.changed:
                    stub.requests.append((method, self.path, dict(self.headers), body))
                    stub.changed.notify_all()
                status, payload, content_type = stub.answer(method, self.path, self.headers)
                self._reply(status, payload, content_type)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, method: str, path: str, headers) -> tuple[int, bytes, str]:
        def js(obj):
            return 200, json.dumps(obj).encode(), "application/json"

        if path.startswith("/api/agent/v1/"):
            call = path.removeprefix("/api/agent/v1/")
            if call == "register" and headers.get("Authorization") == f"Bearer {TOKEN}":
                with self.changed:
                    if self.boot_spent:
                        refusal = b'{"status": 403, "reason": "BootCredentialReused", "detail": "used"}'
                        return 403, refusal, "application/problem+json"
                    self.boot_spent = True
                handover = {"token": AGENT_TOKEN, "callback_token": CALLBACK_TOKEN}
                return js({"install": 1, "hostname": "lab01", "heartbeat_s": 30, **handover})
            if headers.get("Authorization") != f"Bearer {AGENT_TOKEN}":
                return 401, b"{}", "application/json"
            if call == "register":
                return js({"install": 1, "hostname": "lab01", "heartbeat_s": 30})
            if call.startswith("tasks/next"):
                if self.hold_polls:
                    return js({"task": None, "retry_after_s": 0.2})
                with self.changed:
                    if self.in_flight:
                        return js({"task": None, "retry_after_s": 0.05})
                    task = self.tasks.pop(0) if self.tasks else None
                    if task:
                        self.in_flight.add(task["id"])
                return js({"task": task} if task else {"task": None, "finished": True})
            if call.startswith("tasks/") and call.endswith("/result"):
                with self.changed:
                    self.in_flight.discard(call.split("/")[1])
            return js({"ok": True, "cancel": False})
        if path.startswith(f"/i/{CALLBACK_TOKEN}/events/"):
            return js({"ok": True})
        if path.startswith(f"/i/{TOKEN}/"):
            name = path.removeprefix(f"/i/{TOKEN}/")
            if name in self.answers:
                return 200, self.answers[name].encode(), "text/plain"
            return 404, b"not found", "text/plain"
        if path.startswith("/images/"):
            file = self.image_dir / path.removeprefix("/images/")
            if file.is_file():
                return 200, file.read_bytes(), "application/octet-stream"
        return 404, b"not found", "text/plain"

    def paths(self, method: str | None = None) -> list[str]:
        with self.changed:
            return [p for m, p, _, _ in self.requests if method in (None, m)]

    def wait_for(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"stub: condition not met; requests: {[p for _, p, _, _ in self.requests]}")
                self.changed.wait(remaining)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub(tmp_path):
    server = Stub(tmp_path / "images")
    yield server
    server.close()


@pytest.fixture
def demo_image(tmp_path):
    return build_demo_image(tmp_path / "images")


@pytest.fixture
def tftp(tmp_path) -> Path:
    root = tmp_path / "tftp"
    pxe.write_defaults(root)
    return root


@pytest.fixture
def make_machine(tmp_path, tftp):
    machines: list[LabMachine] = []

    def make(firmware: str = "bios", **kwargs) -> LabMachine:
        bmc = LoopbackBmc(BMC_USER, BMC_PASSWORD)
        machine = LabMachine(
            f"lab{len(machines) + 1:02d}", MACS, tmp_path / f"machine{len(machines)}", tftp, firmware=firmware,
            bmc=bmc, install_s=kwargs.pop("install_s", 0.3), **kwargs,
        )  # fmt: skip
        machines.append(machine)
        return machine.start()

    yield make
    for machine in machines:
        machine.stop()


def driver(machine: LabMachine):
    return get_driver("ipmi", machine.bmc.target(timeout_s=5))


def arm(tftp: Path, method: str, base_url: str, mac: str = MACS[0], **kwargs) -> None:
    """Write the per-MAC configs the engine's write-boot-config step writes."""
    cmdline = pxe.kernel_cmdline(
        method, mac=mac, base_url=base_url, token=TOKEN, hostname="lab01", domain="lab", **kwargs
    )
    pxe.write_all(tftp, mac=mac, kernel="images/vmlinuz", initrd="images/initrd.img", cmdline=cmdline)


def render_answers(stub: Stub, profile_name: str) -> None:
    profile = next(p for p in stock_profiles() if p["name"] == profile_name)
    context = pxe.install_context(
        hostname="lab01", domain="lab", mac=MACS[0], base_url=stub.url, token=TOKEN,
        callback_token=CALLBACK_TOKEN, disk="/dev/sda", root_password_hash="$6$x$y",
    )  # fmt: skip
    names = [file.name for file in pxe.answer_files(profile["method"])]
    for name in names:
        source = META_DATA_TEMPLATE if name == "meta-data" else profile["template"]
        stub.answers[name] = pxe.render_template(source, context)
