"""Shared helpers for the PXE tests: fixed inputs, golden files and the real validators."""

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.pxe import Layout, StaticAddress, install_context

REPO = Path(__file__).resolve().parents[3]
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
CLOUD_INIT_DIR = REPO / "var" / "cloud-init"
KSVALIDATOR = Path(sys.executable).parent / "ksvalidator"

MAC = "52:54:00:12:34:56"
BASE_URL = "http://192.0.2.10:8000"
TOKEN = "tok-0123456789abcdefABCDEF"
CALLBACK_TOKEN = "cb-0123456789abcdefABCDEF"
# openssl passwd -6 -salt goldensaltgolden correct-horse
ROOT_HASH = "$6$goldensaltgolden$8xcDRzCLFoYm0Xgj9yeN5cZMQgqIDCpipjNSd1RoyeVPABg2bOs8/7.M9pWtQmB41Lf8D1WB4vJKFSKGSxKoL0"
SSH_CA_KEYS = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEexampleSiteUserCAkeyOnlyForGoldenFiles0000 ssh-ca@dc1",)
SSH_KEYS = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbTg6s7kq6YyQkfq1lhYz4kO4Q5CqgAx1Jm0l1bq0vC ops@example.net",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 oncall@example.net",
)
# Interface names that differ per machine; no rendered file may rely on one.
GUESSED_NIC_NAMES = ("eth0", "eth1", "eno1", "eno2", "ens1", "ens3", "enp2s0", "em1")


def context(*, static: bool = True, storage: Layout | None = None) -> dict:
    network = StaticAddress("192.0.2.50", 24, "192.0.2.1", ("192.0.2.2", "192.0.2.3")) if static else None
    return install_context(
        hostname="node01",
        domain="dc1.example.net",
        mac=MAC,
        base_url=BASE_URL,
        token=TOKEN,
        callback_token=CALLBACK_TOKEN,
        disk="/dev/sda",
        root_password_hash=ROOT_HASH,
        ssh_keys=SSH_KEYS,
        ssh_ca_keys=SSH_CA_KEYS,
        network=network,
        storage=storage,
    )


def assert_golden(name: str, text: str) -> None:
    """Compare `text` with golden/<name>; UPDATE_GOLDEN=1 rewrites the golden file instead."""
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run with UPDATE_GOLDEN=1 to create it")
    expected = path.read_text()
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "rendered"))
        pytest.fail(f"{name} differs from its golden file (UPDATE_GOLDEN=1 to accept):\n{diff}")


def run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, **kwargs)


def cloud_init_tool(name: str) -> Path:
    tool = CLOUD_INIT_DIR / name
    if not tool.exists():
        pytest.fail(f"{tool} is missing: run .ci/setup-cloud-init (make test does) to unpack cloud-init into var/")
    return tool
