"""The stock hardware test scripts (installs/stock_scripts/), each run by the agent's run_script task in sandbox
mode against a temporary machine directory, passing and failing; and their header, which the script library
reads."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from provisioner.agent.tasks import run_task
from tests.unit.agent.conftest import MIB, make_disk

SCRIPTS = Path(__file__).resolve().parents[3] / "installs" / "stock_scripts"
NAMES = ("smart-selftest", "disk-read", "memory-test", "cpu-burn", "nic-speed")
HEADER = re.compile(r"#!/bin/sh\n# description: (?P<description>[^\n]+)\n# timeout_s: (?P<timeout>\d+)\n"
                    r"# safe_to_repeat: true\n")  # fmt: skip


def script(name: str) -> str:
    return (SCRIPTS / f"{name}.sh").read_text()


def run(ctx, name: str, *args: str, timeout_s: float = 60):
    return run_task(ctx, "run_script", {"script": script(name), "args": list(args), "timeout_s": timeout_s})


def machine(sandbox, **declared) -> None:
    (sandbox.root / "machine.json").write_text(json.dumps({"nics": [], **declared}))


def test_every_script_has_the_library_header_and_parses():
    assert sorted(p.stem for p in SCRIPTS.glob("*.sh")) == sorted(NAMES)
    shells = [["sh"]] + ([["busybox", "sh"]] if shutil.which("busybox") else [])
    for name in NAMES:
        header = HEADER.match(script(name))
        assert header, f"{name}: line 1 #!/bin/sh, then description, timeout_s and safe_to_repeat lines"
        assert 30 <= int(header["timeout"]) <= 3900 and header["description"].endswith(".")
        for shell in shells:
            done = subprocess.run([*shell, "-n", str(SCRIPTS / f"{name}.sh")], capture_output=True, text=True)
            assert done.returncode == 0, (name, shell, done.stderr)


def test_smart_selftest_passes_disks_without_smart_and_fails_a_declared_failing_one(sandbox, ctx):
    make_disk(sandbox, "sda", MIB)
    make_disk(sandbox, "sdb", MIB)
    result = run(ctx, "smart-selftest")
    assert result.ok, result
    assert result.output.splitlines() == [
        "sda: a sandbox disk image has no SMART: no self-test, passed",
        "sdb: a sandbox disk image has no SMART: no self-test, passed",
        "sandbox: 2 disk(s), every one with SMART passed",
    ]
    machine(
        sandbox,
        disks={
            "sda": {"smart": {"available": True, "passed": True}},
            "sdb": {"smart": {"available": True, "passed": False, "detail": "5 reallocated sectors"}},
        },
    )
    result = run(ctx, "smart-selftest")
    assert (result.ok, result.reason) == (False, "ScriptFailed")
    assert "sda: short self-test passed" in result.output
    assert "sdb: short self-test FAILED: 5 reallocated sectors" in result.output
    assert result.output.splitlines()[-1] == "FAILED: sdb"


def test_disk_read_reports_speed_and_fails_on_a_read_error(sandbox, ctx):
    make_disk(sandbox, "sda", 40 * MIB)
    make_disk(sandbox, "sdb", 8 * MIB)
    result = run(ctx, "disk-read", "16")
    assert result.ok, result
    lines = result.output.splitlines()
    assert re.fullmatch(r"sda: read 16 MiB in \d+\.\d\d s: \d+ MB/s", lines[0])
    assert re.fullmatch(r"sdb: read 8 MiB in \d+\.\d\d s: \d+ MB/s", lines[1])  # smaller than asked: all of it
    assert lines[-1] == "2 disk(s) read without error"
    # A disk that cannot be read: here an image that is a directory, as unreadable as a dying disk.
    (sandbox.disks / "sdc.img").mkdir()
    result = run(ctx, "disk-read")
    assert (result.ok, result.reason) == (False, "ScriptFailed")
    assert "sdc: READ ERROR: dd: error reading" in result.output and "Is a directory" in result.output
    assert result.output.splitlines()[-1] == "FAILED: read errors on: sdc"
    assert run(ctx, "disk-read", "lots").message == "the script exited with status 2"


@pytest.mark.skipif(shutil.which("memtester") is None, reason="memtester is not installed (.ci/apt-packages)")
def test_memory_test_runs_memtester_and_refuses_a_bad_size(ctx):
    result = run(ctx, "memory-test", "4")
    assert result.ok, result
    assert "  Stuck Address       : ok" in result.output.splitlines()
    assert "\b" not in result.output and result.output.splitlines()[-1] == "4 MiB tested without error"
    result = run(ctx, "memory-test", "-4")
    assert (result.ok, result.output) == (False, "argument 1 must be a whole number of MiB (at least 1), not '-4'")
    # The lab host is every lab machine's: a sandbox tests a token 4 MiB whatever it is asked.
    big = run(ctx, "memory-test", str(1 << 30))
    assert big.ok and big.output.splitlines()[0] == f"sandbox: 4 MiB of the lab host's memory instead of {1 << 30} MiB"


def test_memory_test_in_a_sandbox_without_memtester_says_so(ctx, tmp_path, monkeypatch):
    # A PATH with the shell's tools and no memtester, as on a lab host that lacks it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "awk", "mktemp", "rm", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr("provisioner.agent.tools.TOOL_DIRS", ())
    result = run(ctx, "memory-test", "4")
    assert result.ok and result.output == "sandbox: memtester is not installed on this host: memory not tested; passed"


def test_cpu_burn_keeps_every_core_busy_and_refuses_bad_seconds(ctx):
    result = run(ctx, "cpu-burn", "2")
    assert result.ok, result
    cores = int(subprocess.run(["getconf", "_NPROCESSORS_ONLN"], capture_output=True, text=True).stdout)
    # A sandbox shares the lab host: one loop, at most 5 s; every core's load is still reported.
    lines = result.output.splitlines()
    assert lines[0] == "sandbox: one core of the lab host for 2 s"
    assert lines[1].startswith("1 busy loops running for 2 s")
    assert len(re.findall(r"^cpu\d+: \d+% busy$", result.output, re.M)) == cores
    assert lines[-1] == "all 1 cores stayed online and busy for 2 s"
    capped = run(ctx, "cpu-burn", "60")
    assert capped.ok and capped.output.splitlines()[0] == "sandbox: one core of the lab host for 5 s"
    # The busy loops (subshells of the script, with its command line) are gone once the script is.
    leftover = subprocess.run(["pgrep", "-f", r"provisioner-script-\w+/script 2$"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""
    for bad, said in (("0", "at least 1"), ("3601", "at most 3600 seconds")):
        result = run(ctx, "cpu-burn", bad)
        assert (result.ok, result.reason) == (False, "ScriptFailed") and said in result.output


def test_nic_speed_checks_the_declared_nics(sandbox, ctx):
    machine(sandbox, nics=[{"name": "eno1", "mac": "52:54:00:00:00:01", "speed_mbps": 25000},
                           {"name": "eno2", "mac": "52:54:00:00:00:02", "link": False},
                           {"name": "eno3", "mac": "52:54:00:00:00:03", "speed_mbps": 10000}])  # fmt: skip
    result = run(ctx, "nic-speed", "10000")
    assert result.ok, result
    assert result.output.splitlines() == [
        "eno1: link up at 25000 Mb/s (at least 10000 Mb/s)",
        "eno2: no link: not checked",
        "eno3: link up at 10000 Mb/s (at least 10000 Mb/s)",
        "2 NIC(s) with link, all at 10000 Mb/s or more",
    ]
    result = run(ctx, "nic-speed", "25000")
    assert (result.ok, result.reason) == (False, "ScriptFailed")
    assert "eno3: link up at 10000 Mb/s, slower than 25000 Mb/s: FAILED" in result.output
    machine(sandbox, nics=[{"name": "eno1", "mac": "52:54:00:00:00:01"}])
    assert "eno1: link up, speed unknown (the driver does not say): FAILED" in run(ctx, "nic-speed", "1000").output
    machine(sandbox, nics=[{"name": "eno1", "mac": "52:54:00:00:00:01", "link": False}])
    assert run(ctx, "nic-speed", "1000").output.splitlines()[-1] == "FAILED: no NIC has link"
    assert "must be the expected speed in Mb/s" in run(ctx, "nic-speed").output
