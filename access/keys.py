"""Parsing and checking SSH keys as operators paste them. No Django: the forms, the models and the
transport share these, and a bad key is reported the same way wherever it was entered."""

from __future__ import annotations

import asyncssh


class BadKey(ValueError):
    """A pasted key could not be used; the message says why without quoting the key."""


def parse_private_key(text: str) -> asyncssh.SSHKey:
    """An unencrypted private key in OpenSSH or PEM format.

    Passphrase-protected keys are refused: the product logs in unattended, and a passphrase stored
    next to the key would protect nothing."""
    try:
        return asyncssh.import_private_key(text.strip() + "\n")
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
        # asyncssh says "Passphrase must be specified" for an encrypted key; its other messages may quote
        # parts of the input, so none of them is passed on.
        if "passphrase" in str(exc).lower() or isinstance(exc, asyncssh.KeyEncryptionError):
            raise BadKey("This private key is passphrase-protected; paste an unencrypted key.") from None
        raise BadKey("Not a private key in OpenSSH or PEM format.") from None


def public_key_line(private_text: str, comment: str = "") -> str:
    """The authorized_keys line of a private key's public half."""
    key = parse_private_key(private_text)
    line = key.export_public_key("openssh").decode().strip()
    # The exported line carries the key's own comment, if any; ours says which site it serves.
    algorithm, blob = line.split()[:2]
    return f"{algorithm} {blob}" + (f" {comment}" if comment else "")


def generate_private_key() -> str:
    """A new ed25519 private key in OpenSSH format (short, fast, supported by every OpenSSH since 6.5)."""
    return asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()


def parse_host_keys(text: str) -> list[asyncssh.SSHKey]:
    """Public host keys from known_hosts lines ("[addr]:port ssh-ed25519 AAAA..."), ssh-keyscan output or
    the server's ssh_host_*_key.pub files ("ssh-ed25519 AAAA... root@host"). Blank lines and # comments
    are skipped. Host patterns are ignored: the pin belongs to the row it is stored on."""
    keys = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            raise BadKey(f"Line {number}: @cert-authority and @revoked markers are not supported; pin the key.")
        words = line.split()
        key = None
        for i in range(len(words) - 1):
            try:
                key = asyncssh.import_public_key(f"{words[i]} {words[i + 1]}")
                break
            except (asyncssh.KeyImportError, ValueError):
                continue
        if key is None:
            raise BadKey(f"Line {number} holds no SSH public key (expected e.g. 'ssh-ed25519 AAAA…').")
        keys.append(key)
    return keys


def fingerprint(key: asyncssh.SSHKey) -> str:
    """The SHA256 fingerprint OpenSSH prints (ssh-keygen -lf, and the 'host key changed' warning)."""
    return key.get_fingerprint("sha256")


def describe(keys: list[asyncssh.SSHKey]) -> str:
    return ", ".join(f"{k.get_algorithm()} {fingerprint(k)}" for k in keys) or "none"


def known_hosts_line(key: asyncssh.SSHKey) -> str:
    """The key as 'algorithm base64', without a host pattern."""
    algorithm, blob = key.export_public_key("openssh").decode().split()[:2]
    return f"{algorithm} {blob}"
