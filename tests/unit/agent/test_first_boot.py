"""first_boot_callback: a systemd oneshot in the target root that reports the installed OS's first boot once."""

from __future__ import annotations

import os
import stat

import pytest

from provisioner.agent.results import TaskFailed
from provisioner.agent.tasks import TASKS, run_task
from provisioner.agent.tasks import firstboot as fb

TOKEN = "tok_0123456789abcdefXYZ"
BASE = "http://10.0.0.1:8000/"


def identity():
    return BASE, TOKEN


def test_writes_env_file_unit_and_enables_it(ctx, sandbox):
    output = fb.first_boot_callback(ctx, {}, identity=identity)

    root = sandbox.target
    env = root / "etc/provisioner/first-boot"
    assert (
        env.read_text().splitlines()[-1] == f"PROVISIONER_FIRST_BOOT_URL=http://10.0.0.1:8000/i/{TOKEN}/events/finished"
    )
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert stat.S_IMODE(env.parent.stat().st_mode) == 0o700
    unit = (root / "etc/systemd/system/provisioner-first-boot.service").read_text()
    assert "Type=oneshot" in unit
    assert "EnvironmentFile=/etc/provisioner/first-boot" in unit
    assert "ExecStartPost=/bin/systemctl disable provisioner-first-boot.service" in unit
    assert "WantedBy=multi-user.target" in unit
    assert TOKEN not in unit
    link = root / "etc/systemd/system/multi-user.target.wants/provisioner-first-boot.service"
    assert os.readlink(link) == "/etc/systemd/system/provisioner-first-boot.service"
    assert TOKEN not in output
    assert ctx.channel.percents[-1] == 100


def test_the_unit_hands_sh_a_literal_dollar(ctx, sandbox):
    fb.first_boot_callback(ctx, {}, identity=identity)
    unit = (sandbox.target / "etc/systemd/system/provisioner-first-boot.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    # systemd turns $$ into $, so sh expands the variable from the EnvironmentFile, quoted as one word.
    assert '"$$PROVISIONER_FIRST_BOOT_URL"' in exec_start
    assert "${" not in exec_start


def test_running_twice_rewrites_in_place(ctx, sandbox):
    fb.first_boot_callback(ctx, {}, identity=identity)
    fb.first_boot_callback(ctx, {}, identity=lambda: ("http://other:9000", TOKEN))
    env = (sandbox.target / "etc/provisioner/first-boot").read_text()
    assert f"http://other:9000/i/{TOKEN}/events/finished" in env
    wants = sandbox.target / "etc/systemd/system/multi-user.target.wants"
    assert [p.name for p in wants.iterdir()] == ["provisioner-first-boot.service"]


def test_params_are_refused_so_no_token_is_ever_sent_as_one(ctx):
    result = run_task(ctx, "first_boot_callback", {"url": f"{BASE}i/{TOKEN}/events/finished"})
    assert not result.ok
    assert result.reason == "InvalidParams"


def test_registered_under_its_contract_name():
    assert TASKS["first_boot_callback"] is fb.first_boot_callback


@pytest.mark.parametrize(
    "base, token",
    [("http://cp/'; rm -rf /", TOKEN), ("http://cp:8000", "short"), ("http://cp $X", TOKEN), ("ftp://cp", TOKEN)],
)
def test_unsafe_url_or_token_fails_without_quoting_the_token(ctx, sandbox, base, token):
    with pytest.raises(TaskFailed) as caught:
        fb.first_boot_callback(ctx, {}, identity=lambda: (base, token))
    assert caught.value.reason == "InvalidCallbackUrl"
    assert TOKEN not in str(caught.value)
    assert not (sandbox.target / "etc/provisioner/first-boot").exists()


def test_a_symlinked_directory_cannot_send_the_files_outside_the_target(ctx, sandbox, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (sandbox.target / "etc").mkdir(parents=True)
    (sandbox.target / "etc/provisioner").symlink_to(outside)
    with pytest.raises(TaskFailed) as caught:
        fb.first_boot_callback(ctx, {}, identity=identity)
    assert caught.value.reason == "UnsafeTargetPath"
    assert list(outside.iterdir()) == []


def test_without_the_agents_identity_the_task_fails_and_writes_nothing(ctx, sandbox):
    ctx.identity = None
    with pytest.raises(TaskFailed) as caught:
        fb.first_boot_callback(ctx, {})
    assert caught.value.reason == "AgentConfigUnavailable"
    assert not (sandbox.target / "etc/provisioner/first-boot").exists()


def test_the_running_agent_hands_its_identity_through_the_context(ctx, sandbox):
    ctx.identity = identity
    fb.first_boot_callback(ctx, {})
    env = (sandbox.target / "etc/provisioner/first-boot").read_text()
    assert f"http://10.0.0.1:8000/i/{TOKEN}/events/finished" in env
