"""Real OpenSSH servers for the access tests: `sshd -D -e -f <config>` on 127.0.0.1 high ports, with host
keys, authorized_keys and config of their own in a temporary directory. Nothing of the system's sshd setup
is used, and nothing listens beyond loopback."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> tuple[str, str]:
    """(private key text, public key line) of a new key written to path and path.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


@dataclass
class Sshd:
    name: str
    port: int
    host_key_pub: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def available() -> str | None:
    """Why these tests cannot run here, or None."""
    if not os.path.exists(SSHD):
        return f"{SSHD} is missing (Debian package openssh-server)"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen is missing (Debian package openssh-client)"
    return None


def start(
    directory: Path,
    name: str,
    *,
    authorized_keys: list[str],
    forwarding: bool,
    trusted_user_ca_keys: Path | None = None,
    tty: bool = False,
) -> Sshd:
    """An sshd for the tests. ``trusted_user_ca_keys``: the file of CA keys whose user certificates it accepts
    (sshd reads it at every login, so a test may rewrite it); ``tty``: whether it grants PTYs (shells)."""
    directory.mkdir(parents=True, exist_ok=True)
    _, host_pub = keygen(directory / f"{name}_host_key")
    authorized = directory / f"{name}_authorized_keys"
    authorized.write_text("\n".join(authorized_keys) + "\n")
    port = free_port()
    config = directory / f"{name}_sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {directory / f'{name}_host_key'}",
                "PidFile none",
                f"AuthorizedKeysFile {authorized}",
                # The temporary directory is not root-owned with sshd's required modes.
                "StrictModes no",
                "UsePAM no",
                f"AllowUsers {getpass.getuser()}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                f"AllowTcpForwarding {'yes' if forwarding else 'no'}",
                "AllowAgentForwarding no",
                "X11Forwarding no",
                f"PermitTTY {'yes' if tty else 'no'}",
                *([f"TrustedUserCAKeys {trusted_user_ca_keys}"] if trusted_user_ca_keys else []),
                "PrintMotd no",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        # Run as root, sshd chroots its pre-auth child into this directory (Debian's unit creates it).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    log = directory / f"{name}.log"
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log.open("w"), close_fds=True
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd {name} exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.02)
    else:
        process.kill()
        raise RuntimeError(f"sshd {name} did not listen on {port}: {log.read_text()}")
    return Sshd(name, port, host_pub, process, log)
