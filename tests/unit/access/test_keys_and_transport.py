"""Key parsing and the command wrapper: no network, no database."""

import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest

from access import errors, keys, transport

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def host_key():
    return asyncssh.generate_private_key("ssh-ed25519")


def test_host_keys_from_known_hosts_keyscan_and_pub_files(host_key):
    line = keys.known_hosts_line(host_key)
    text = f"# pinned by hand\n\n[10.0.0.1]:2222 {line}\n10.0.0.1 {line} extra\n{line} root@bastion\n"
    parsed = keys.parse_host_keys(text)
    assert len(parsed) == 3 and all(k == host_key.convert_to_public() for k in parsed)
    assert keys.describe(parsed[:1]) == f"ssh-ed25519 {host_key.get_fingerprint('sha256')}"


@pytest.mark.parametrize(
    ("text", "message"),
    [("@cert-authority *.example ssh-ed25519 AAAA", "not supported"), ("10.0.0.1 nonsense", "holds no SSH")],
)
def test_host_key_garbage_is_refused_with_the_line_number(text, message):
    with pytest.raises(keys.BadKey, match=f"Line 1.*{message}"):
        keys.parse_host_keys(text)


def test_private_keys_passphrase_protected_or_garbage_are_refused_without_quoting_them():
    key = asyncssh.generate_private_key("ssh-ed25519")
    locked = key.export_private_key("pkcs8-pem", passphrase="pw").decode()  # the OpenSSH format's KDF is slow
    with pytest.raises(keys.BadKey, match="passphrase-protected") as exc:
        keys.parse_private_key(locked)
    assert locked.splitlines()[1] not in str(exc.value)
    with pytest.raises(keys.BadKey, match="Not a private key"):
        keys.parse_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n")


def test_public_key_line_and_generation():
    private = keys.generate_private_key()
    line = keys.public_key_line(private, comment="provisioner@par1")
    algorithm, blob, comment = line.split()
    assert (algorithm, comment) == ("ssh-ed25519", "provisioner@par1")
    assert asyncssh.import_public_key(f"{algorithm} {blob}") == keys.parse_private_key(private).convert_to_public()


def test_the_endpoint_repr_hides_the_key():
    endpoint = transport.Endpoint("hop", "10.0.0.1", 22, "jump", "-----BEGIN OPENSSH PRIVATE KEY-----secret")
    assert "secret" not in repr(endpoint) and "PRIVATE" not in repr(endpoint)


def test_the_wrapper_bounds_the_command_on_the_machine_and_keeps_it_intact():
    wrapped = transport.bounded("echo 'it''s' $HOME; sleep 1", 2.5)
    assert "timeout -s KILL 4 " in wrapped
    result = subprocess.run(
        ["sh", "-c", wrapped],
        capture_output=True,
        text=True,
        env={"SHELL": "/bin/sh", "HOME": "/h", "PATH": "/usr/bin:/bin"},
        timeout=10,
    )
    assert (result.returncode, result.stdout) == (0, "its /h\n")
    result = subprocess.run(["sh", "-c", transport.bounded("sleep 30", 0.1)], capture_output=True, timeout=10)
    # Killed by the machine-side timeout, 2 s in; timeout(1) signals its whole group, itself included.
    assert result.returncode in (-9, 137)


def test_reasons_are_the_class_names_and_say_whether_to_retry():
    assert errors.BastionUnreachable("x").reason == "BastionUnreachable"
    assert errors.TargetUnreachable("x").retryable and errors.VerifyTimeout("x").retryable
    assert not errors.BastionHostKeyMismatch("x").retryable and not errors.TargetAuthFailed("x").retryable


def test_the_transport_checks_and_keys_import_without_django():
    code = (
        "import sys, access.transport, access.checks, access.keys, access.errors\n"
        "print(','.join(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
