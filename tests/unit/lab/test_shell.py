"""The installed lab machine's shell: the grammar it parses and the facts it answers, from its root directory.
The SSH side is in tests/integration/lab/test_ssh.py."""

from __future__ import annotations

import json

import pytest

from access import checks, transport
from provisioner.lab.commands import Installed, Nic, shell_for

MAC = "52:54:00:01:01:01"


@pytest.fixture
def machine(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("web01\n")
    (tmp_path / "etc" / "hosts").write_text("127.0.1.1 web01.dc1.example web01\n")
    (tmp_path / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    nics = [Nic("eno1", MAC, link=True, ip="127.77.1.1", prefix=8), Nic("eno2", "52:54:00:01:01:02", link=False)]
    return Installed(tmp_path, "localhost", nics)


def run(machine, text: str):
    shell = shell_for(machine, "root")
    return shell, shell.run(text)


def test_the_install_check_as_the_transport_sends_it_passes_with_the_machines_facts(machine):
    expected = {"hostname": "web01.dc1.example", "os": {"ID": "debian"}, "mac": MAC, "ip": "127.77.1.1",
                "prefix": 8, "root_disk": "/dev/sda"}  # fmt: skip
    _, result = run(machine, transport.bounded(checks.script(expected), 30))
    assert result.status == 0, result.err
    results = checks.evaluate(checks.parse(result.out), expected)
    assert [c.name for c in results] == ["hostname", "os_release", "nic", "root_disk"]
    assert all(c.ok for c in results), results


def test_stdout_and_stderr_keep_their_order_and_redirections_apply(machine):
    _, result = run(machine, "echo one; cat /nonexistent; echo two")
    assert result.chunks == [(1, "one\n"), (2, "cat: /nonexistent: No such file or directory\n"), (1, "two\n")]
    assert result.status == 0
    assert run(machine, "cat /nonexistent 2>/dev/null || echo missing")[1].chunks == [(1, "missing\n")]
    assert run(machine, "cat /nonexistent 2>&1 | sed 's/cat/CAT/'")[1].out.startswith("CAT: /nonexistent")


def test_pipes_substitution_variables_and_conditions(machine):
    assert run(machine, "hostname -f | sed 's/\\..*//'")[1].out == "web01\n"
    assert run(machine, 'echo "$(hostname) in $HOME" ${NOPE:-default}')[1].out == "web01 in /root default\n"
    assert run(machine, "if false; then echo yes; else echo no; fi")[1].out == "no\n"
    assert run(machine, "false && echo skipped; echo $?")[1].out == "1\n"
    links = json.loads(run(machine, "ip -j addr show")[1].out)
    assert [(x["ifname"], x["address"]) for x in links][1:] == [("eno1", MAC), ("eno2", "52:54:00:01:01:02")]


def test_errors_are_a_shells_errors(machine):
    _, result = run(machine, "frobnicate --now")
    assert (result.status, result.err) == (127, "sh: frobnicate: command not found\n")
    _, result = run(machine, "echo 'unterminated")
    assert result.status == 2 and result.err.startswith("sh: ")
    (machine.root / "etc" / "escape").symlink_to("/etc/hostname")  # the host's file, outside the machine's root
    _, result = run(machine, "cat /etc/escape")
    assert (result.status, result.out) == (1, "")
    assert run(machine, "cat ../../../../../etc/hostname")[1].out == "web01\n"  # `..` stops at the root, as at /


def test_exit_ends_the_shell_and_nothing_after_it_runs(machine):
    shell, result = run(machine, "echo bye; exit 3; echo never")
    assert (shell.exited, result.status, result.out) == (3, 3, "bye\n")
    shell, result = run(machine, "sh -c 'exit 4'; echo after $?")
    assert shell.exited is None and result.out == "after 4\n"
