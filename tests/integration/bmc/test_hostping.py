"""Host ping for real, both ways: the unprivileged ICMP socket and the ping binary.

Every address in 127.0.0.0/8 answers on Linux, so the silent host and the kernel that forbids ICMP sockets
live in a private network namespace (``unshare -n``) that reaches nothing: its loopback, and a veth pair
whose far end has no address, so what is sent to 192.0.2.x (TEST-NET-1, with a fixed neighbour entry) is
dropped without a word. A fresh namespace has the kernel's default net.ipv4.ping_group_range, "1 0": no
group may open ICMP sockets, which is the fallback's case; widening it there changes nothing outside.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from provisioner.bmc import hostping

ROOT = Path(__file__).resolve().parents[3]
SILENT = [f"192.0.2.{i}" for i in range(2, 7)]
LOOPBACK = ["127.0.0.1", "127.0.0.7", "127.1.2.3"]

SETUP = " && ".join(
    [
        "ip link set lo up",
        "ip link add v0 type veth peer name v1",
        "ip addr add 192.0.2.1/24 dev v0",
        "ip link set v0 up",
        "ip link set v1 up",
        *(f"ip neigh add {a} lladdr 02:00:00:00:00:{i:02x} dev v0 nud permanent" for i, a in enumerate(SILENT, 2)),
    ]
)


def _namespaces() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


needs_netns = pytest.mark.skipif(not _namespaces(), reason="network namespaces need root (unshare -n)")
needs_ping = pytest.mark.skipif(shutil.which("ping") is None, reason="iputils-ping is in .ci/apt-packages")


def in_namespace(code: str, *, allow_sockets: bool) -> dict:
    """Run ``code`` (which prints one JSON line) in a fresh network namespace set up as above."""
    setup = SETUP + (' && sysctl -qw net.ipv4.ping_group_range="0 2147483647"' if allow_sockets else "")
    program = "import json, time\nfrom provisioner.bmc import hostping\n" + textwrap.dedent(code)
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", f'{setup} && exec "$0" -c "$1"', sys.executable, program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


SWEEP = f"""
started = time.monotonic()
results = hostping.ping_many({LOOPBACK + SILENT!r}, timeout_s=0.5, method=METHOD)
print(json.dumps({{
    "chosen": hostping.choose(METHOD),
    "elapsed": time.monotonic() - started,
    "results": {{a: [r.reachable, r.latency_s, r.error] for a, r in results.items()}},
}}))
"""


def check_sweep(out: dict, method: str) -> None:
    assert out["chosen"] == method
    for address in LOOPBACK:
        reachable, latency, error = out["results"][address]
        assert reachable is True and 0 < latency < 0.5 and error == "", (address, out)
    for address in SILENT:
        assert out["results"][address] == [False, None, "no echo reply within 0.5 s"], (address, out)
    # Five silent hosts cost one timeout, not five.
    assert out["elapsed"] < 2.0, out


@needs_netns
def test_the_unprivileged_socket_pings_every_host_at_once_and_times_out_on_silent_ones():
    check_sweep(in_namespace(SWEEP.replace("METHOD", '"socket"'), allow_sockets=True), "socket")


@needs_netns
@needs_ping
def test_the_ping_binary_gives_the_same_answers():
    check_sweep(in_namespace(SWEEP.replace("METHOD", '"binary"'), allow_sockets=True), "binary")


@needs_netns
@needs_ping
def test_where_the_kernel_refuses_icmp_sockets_auto_falls_back_to_the_binary():
    out = in_namespace(
        """
        try:
            hostping.choose("socket")
            refused = ""
        except hostping.PingUnavailable as exc:
            refused = str(exc)
        result = hostping.ping_many(["127.0.0.1", "192.0.2.2"], timeout_s=0.5)
        try:
            hostping.choose("auto", binary="no-such-ping")
            neither = ""
        except hostping.PingUnavailable as exc:
            neither = str(exc)
        print(json.dumps({
            "allowed": hostping.socket_allowed(),
            "auto": hostping.choose("auto"),
            "refused": refused,
            "neither": neither,
            "up": result["127.0.0.1"].reachable,
            "silent": result["192.0.2.2"].error,
        }))
        """,
        allow_sockets=False,
    )
    assert out["allowed"] is False and out["auto"] == "binary"
    assert "may not open ICMP sockets" in out["refused"] and 'ping_group_range (now "1 0")' in out["refused"]
    assert "install iputils-ping" in out["neither"]
    assert out["up"] is True and out["silent"] == "no echo reply within 0.5 s"


@needs_ping
def test_from_this_host_loopback_answers_and_nonsense_is_named():
    started = time.monotonic()
    results = hostping.ping_many(["127.0.0.1", "127.0.0.42", "::1", "not-an-address"], timeout_s=1.0)
    assert time.monotonic() - started < 5
    assert [results[a].reachable for a in ("127.0.0.1", "127.0.0.42", "::1")] == [True, True, True]
    assert results["not-an-address"] == hostping.PingResult(
        "not-an-address", False, error="'not-an-address' is not an IP address"
    )
