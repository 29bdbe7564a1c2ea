"""inventory, run_script (output, failure, timeout, arguments), reboot and poweroff in the sandbox."""

import json
import time

import pytest

from provisioner.agent.results import TaskResult
from provisioner.agent.tasks import TASKS, run_task
from tests.unit.agent.conftest import MIB, make_disk


def test_inventory_output_is_the_facts(sandbox, ctx):
    make_disk(sandbox, "sda", 2 * MIB)
    result = run_task(ctx, "inventory", {})
    assert result.ok
    assert json.loads(result.output)["disks"][0]["path"] == "/dev/sda"


def test_run_script_streams_its_output(ctx):
    result = run_task(ctx, "run_script", {"script": "#!/bin/sh\necho one\necho two >&2\n", "timeout_s": 10})
    assert result.ok, result
    assert result.output.splitlines() == ["one", "two"]
    assert ctx.channel.lines == ["one", "two"]


def test_run_script_without_shebang_runs_with_sh(ctx):
    assert run_task(ctx, "run_script", {"script": "test 1 -eq 1 && echo sh-ok"}).output == "sh-ok"


def test_run_script_cannot_see_the_token(ctx, monkeypatch):
    monkeypatch.setenv("PROVISIONER_TOKEN", "secret-token")
    result = run_task(ctx, "run_script", {"script": "env"})
    assert result.ok and "secret-token" not in result.output


def test_run_script_failure_carries_status_and_tail(ctx):
    result = run_task(ctx, "run_script", {"script": "echo partial\nexit 3"})
    assert (result.ok, result.reason) == (False, "ScriptFailed")
    assert "status 3" in result.message and result.output == "partial"


def test_run_script_timeout_kills_the_whole_group(ctx, tmp_path):
    marker = tmp_path / "survivor"
    script = f"echo started\n(sleep 1; touch {marker}) &\nsleep 30\n"
    began = time.monotonic()
    result = run_task(ctx, "run_script", {"script": script, "timeout_s": 0.5})
    assert (result.ok, result.reason) == (False, "ScriptTimedOut")
    assert result.output == "started"
    assert time.monotonic() - began < 5
    time.sleep(1.2)
    assert not marker.exists()


def test_reboot_reports_first_then_acts(sandbox, ctx):
    result = run_task(ctx, "reboot", {})
    assert result.ok and not (sandbox.root / "reboot-requested").exists()
    result.then()
    assert (sandbox.root / "reboot-requested").exists()
    run_task(ctx, "poweroff", {}).then()
    assert (sandbox.root / "poweroff-requested").exists()


def test_unknown_kind_and_non_object_params(ctx):
    assert run_task(ctx, "format_c", {}).reason == "UnknownTaskKind"
    assert run_task(ctx, "inventory", ["x"]).reason == "InvalidParams"


def test_every_contract_kind_is_registered():
    assert set(TASKS) == {
        "inventory", "wipe_disks", "raid", "partition", "write_image", "grow_root", "configure_network",
        "set_hostname", "ssh_keys", "run_script", "reboot", "poweroff", "first_boot_callback", "bootloader",
        "commission", "create_bmc_user", "erase_disks",
    }  # fmt: skip


def test_result_body_is_bounded(ctx):
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done; exit 1"
    body = run_task(ctx, "run_script", {"script": script}).body()
    assert body["output"].splitlines()[0] == "line-100" and body["output"].splitlines()[-1] == "line-299"
    long = TaskResult.failed("PartitionFailed", "x" * 10000).body()
    assert len(long["message"]) == 2000 and long["message"].endswith("…")


def test_a_failure_says_whether_it_is_worth_retrying(ctx):
    assert run_task(ctx, "run_script", {"script": "exit 1"}).body()["retryable"] is False
    transient = TaskResult.failed("DiskBusy", "cannot open /dev/sda exclusively", retryable=True)
    assert transient.body()["retryable"] is True
    assert TaskResult.from_body(transient.body()) == transient  # as the journal keeps it


def test_run_script_passes_its_args_as_argv(ctx):
    script = '#!/bin/sh\necho "$#"\nfor a in "$@"; do echo "[$a]"; done\n'
    args = ["256", "two words", "", "$HOME;rm -rf /", "x" * 1024]
    result = run_task(ctx, "run_script", {"script": script, "args": args})
    assert result.ok, result
    # Each argument arrives whole and unexpanded: argv, never a shell line.
    assert result.output.splitlines() == ["5", "[256]", "[two words]", "[]", "[$HOME;rm -rf /]", f"[{'x' * 1024}]"]
    assert run_task(ctx, "run_script", {"script": 'echo "$#"'}).output == "0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("256", "args: a list of strings is required"),
        ([256], "args: a list of strings is required"),
        (["a"] * 33, "args: at most 32 arguments are allowed, not 33"),
        (["ok", "y" * 1025], "args: argument 2 is longer than 1024 characters"),
        (["nul\x00"], "args: argument 1 holds a NUL byte, which no command line can carry"),
    ],
)
def test_run_script_refuses_bad_args(ctx, args, message):
    result = run_task(ctx, "run_script", {"script": "echo ran", "args": args})
    assert (result.reason, result.message) == ("InvalidParams", message)
