"""first_boot_callback: a systemd oneshot in the target root that reports the installed OS's first boot once."""

from __future__ import annotations

import os
import stat

import pytest

from provisioner.agent import credentials
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


CALLBACK = "cb_0123456789abcdefXYZ"


def kept(state_dir):
    """What the agent keeps of its registration: the callback token came with the answer."""
    credentials.save(state_dir, credentials.Saved(token="agent_0123456789abcdef", callback_token=CALLBACK))


def test_identity_is_the_agents_url_and_the_callback_token_its_registration_kept(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"console=ttyS0 provisioner.url=http://cp:8000 provisioner.token={TOKEN} quiet\n")
    kept(tmp_path / "state")
    # The boot credential on the command line is spent by the registration: never the installed OS's callback.
    argv = ["--sandbox", str(tmp_path), "--cmdline", str(cmdline)]
    assert fb.agent_identity(argv, {}) == ("http://cp:8000", CALLBACK)


def test_identity_prefers_the_token_file_and_url_flag(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    kept(tmp_path / "state")
    argv = ["--url", "http://cp:1", "--token-file", str(token_file), "--cmdline", str(tmp_path / "none")]
    assert fb.agent_identity([*argv, "--state-dir", str(tmp_path / "state")], {}) == ("http://cp:1", CALLBACK)


def test_identity_sees_the_environment_token_the_agent_removed(monkeypatch, tmp_path):
    monkeypatch.setattr(fb, "_TOKEN_AT_START", TOKEN)
    kept(tmp_path / "state")
    argv = ["--url", "http://cp:1", "--cmdline", str(tmp_path / "none"), "--state-dir", str(tmp_path / "state")]
    assert fb.agent_identity(argv, {}) == ("http://cp:1", CALLBACK)


def test_identity_missing_fails_the_task(tmp_path):
    with pytest.raises(TaskFailed) as caught:
        fb.agent_identity(["--cmdline", str(tmp_path / "none")], {})
    assert caught.value.reason == "AgentConfigUnavailable"


def test_identity_of_an_agent_that_never_registered_fails_the_task(tmp_path):
    argv = ["--url", "http://cp:1", "--token", TOKEN, "--cmdline", str(tmp_path / "none")]
    with pytest.raises(TaskFailed) as caught:
        fb.agent_identity([*argv, "--state-dir", str(tmp_path / "state")], {})
    assert caught.value.reason == "AgentConfigUnavailable" and TOKEN not in str(caught.value)
