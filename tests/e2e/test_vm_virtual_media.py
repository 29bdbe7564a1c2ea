"""The virtual media ISO booted for real: QEMU (TCG) starts the built memory OS from the ISO as a CD, by BIOS and by
UEFI, with no DHCP answer used: the memory OS takes the static address on the ISO's command line, and its agent
registers with the boot credential at the URL the ISO names. The control plane here is a small HTTP server that
records the registration and refuses it (the agent then stops, as it does for a refused boot credential).

Collected with PROVISIONER_E2E=1 (`make e2e`); needs root (the memory OS build), QEMU, OVMF and grub-mkrescue.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from provisioner.pxe import iso
from tests.e2e.conftest import CACHE_DIR, GUEST_HOST, OVMF_CODE, OVMF_VARS

MAC = "52:54:00:77:00:01"
TOKEN = "vmedia-e2e-boot-credential-0123456789"
# QEMU's user-mode network: the guest's usual address, the host as 10.0.2.2, its resolver at 10.0.2.3.
ADDRESS = "10.0.2.15"
BOOT_DEADLINE_S = float(os.environ.get("VMEDIA_BOOT_DEADLINE_S", "600"))  # TCG unpacks the root slowly


@pytest.fixture(scope="module")
def memory_os():
    missing = [t for t in ("qemu-system-x86_64", "grub-mkrescue", "xorriso", "debootstrap") if not shutil.which(t)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run .ci/e2e-setup and .ci/apt-install as root")
    if os.geteuid() != 0:
        pytest.fail("the memory OS build needs root")
    from provisioner.memory_os.build import build

    return build(CACHE_DIR)


class ControlPlane(http.server.ThreadingHTTPServer):
    """Records every registration (headers and body) and refuses it with 403, as a spent credential is."""

    def __init__(self):
        self.registrations: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.registrations.append(
                    {"path": self.path, "authorization": self.headers.get("Authorization", ""),
                     "client": self.client_address[0], "body": json.loads(body or b"{}")}
                )  # fmt: skip
                answer = json.dumps({"reason": "BootCredentialReused", "detail": "recorded by the test"}).encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/problem+json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_the_iso_boots_the_agent_with_a_static_address(memory_os, tmp_path, firmware):
    server = ControlPlane()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    cmdline = (
        f"provisioner.url=http://{GUEST_HOST}:{port} provisioner.token={TOKEN} "
        f"provisioner.ip={ADDRESS}/24 provisioner.gateway={GUEST_HOST} provisioner.dns=10.0.2.3 "
        "console=ttyS0,115200"
    )
    image = iso.build(tmp_path / "install.iso", kernel=memory_os.kernel, initrd=memory_os.initrd, mac=MAC,
                      cmdline=cmdline)  # fmt: skip
    serial = tmp_path / "serial.log"
    argv = [
        "qemu-system-x86_64", "-machine", "q35,accel=tcg" if firmware == "uefi" else "pc,accel=tcg",
        "-m", "1536", "-smp", "1", "-nodefaults", "-display", "none",
        "-chardev", f"file,id=ser0,path={serial}", "-serial", "chardev:ser0",
        # A user-mode network whose DHCP server is never asked: the address comes from the command line.
        "-netdev", "user,id=n0", "-device", f"e1000,netdev=n0,mac={MAC},romfile=",
        "-drive", f"file={image},media=cdrom,readonly=on,if=none,id=cd0",
        "-device", "ide-cd,drive=cd0,bootindex=1",
    ]  # fmt: skip
    if firmware == "uefi":
        shutil.copyfile(OVMF_VARS, tmp_path / "vars.fd")
        argv += ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,file={tmp_path / 'vars.fd'}"]  # fmt: skip
    vm = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=(tmp_path / "qemu.log").open("wb"))
    try:
        deadline = time.monotonic() + BOOT_DEADLINE_S
        while not server.registrations and time.monotonic() < deadline and vm.poll() is None:
            time.sleep(1)
        console = serial.read_text(errors="replace") if serial.exists() else ""
        assert server.registrations, f"no registration within {BOOT_DEADLINE_S:g} s; console:\n{console[-4000:]}"
    finally:
        vm.kill()
        vm.wait()
        server.shutdown()
        server.server_close()
    registration = server.registrations[0]
    assert registration["path"] == "/api/agent/v1/register"
    assert registration["authorization"] == f"Bearer {TOKEN}"
    macs = [nic.get("mac") for nic in registration["body"]["facts"].get("nics", [])]
    assert MAC in macs
    assert registration["body"]["facts"].get("efi") is (firmware == "uefi")
    assert f"static address {ADDRESS}/24 on" in console
    assert "udhcpc" not in console  # no DHCP was asked for


def test_the_iso_carries_the_memory_os_as_built(memory_os, tmp_path):
    image = iso.build(tmp_path / "x.iso", kernel=memory_os.kernel, initrd=memory_os.initrd, mac=MAC, cmdline="x=1")
    listing = subprocess.run(["xorriso", "-indev", str(image), "-find", "/boot", "-type", "f"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "'/boot/vmlinuz'" in listing and "'/boot/initrd'" in listing
    assert Path(image).stat().st_size > memory_os.initrd.stat().st_size
