"""Where the agent finds its URL and token, and that the token stays out of reprs."""

import pytest

from provisioner.agent import cli
from provisioner.agent.client import Client


def _config(tmp_path, argv, environ=None, cmdline=""):
    path = tmp_path / "cmdline"
    path.write_text(cmdline)
    args = cli.build_parser().parse_args(["--cmdline", str(path), *argv])
    return cli.resolve_config(args, environ or {})


def test_kernel_command_line_supplies_url_and_token(tmp_path):
    line = 'BOOT_IMAGE=/vmlinuz quiet provisioner.url="http://10.0.0.1:8000" provisioner.token=abc123 ip=dhcp\n'
    config = _config(tmp_path, [], cmdline=line)
    assert config.url == "http://10.0.0.1:8000"
    assert config.token == "abc123"
    assert config.state_dir == cli.DEFAULT_STATE_DIR


def test_token_file_beats_environment_beats_argument_beats_kernel(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    line = "provisioner.url=http://x provisioner.token=from-kernel"
    env = {cli.TOKEN_ENV: "from-env"}
    assert _config(tmp_path, ["--token-file", str(token_file), "--token", "a"], env, line).token == "from-file"
    assert _config(tmp_path, ["--token", "from-arg"], env, line).token == "from-env"
    assert _config(tmp_path, ["--token", "from-arg"], {}, line).token == "from-arg"
    assert _config(tmp_path, [], {}, line).token == "from-kernel"


def test_missing_url_or_token_is_a_usage_error(tmp_path):
    with pytest.raises(cli.ConfigError, match="URL"):
        _config(tmp_path, [], cmdline="provisioner.token=t")
    with pytest.raises(cli.ConfigError, match="token"):
        _config(tmp_path, ["--url", "http://x"])
    with pytest.raises(cli.ConfigError, match="token-file"):
        _config(tmp_path, ["--url", "http://x", "--token-file", str(tmp_path / "absent")])


def test_sandbox_keeps_its_journal_inside_the_sandbox(tmp_path):
    config = _config(tmp_path, ["--url", "http://x", "--token", "t", "--sandbox", str(tmp_path / "sb")])
    assert config.state_dir == (tmp_path / "sb" / "state").resolve()


def test_token_is_absent_from_reprs(tmp_path):
    config = _config(tmp_path, ["--url", "http://x", "--token", "s3cr3t-token"])
    assert "s3cr3t-token" not in repr(config)
    assert "s3cr3t-token" not in repr(Client(config.url, config.token))


def test_api_base_is_under_the_site_url():
    assert Client("http://10.0.0.1:8000/", "t").api == "http://10.0.0.1:8000/api/agent/v1/"
