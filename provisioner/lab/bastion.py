"""How the lab is reached over SSH: its jump host, the address of each machine in inventory, the port every
installed machine's sshd listens on, and the keys, kept in the lab's state directory across runs (the installed
machines keep trusting the site login key, and what load_demo pinned stays right)."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncssh

from provisioner.lab.ssh import JumpHost, load_or_create_key, public_line

# Machine i of rack r (both from 1) has 127.77.r.i on its PXE NIC: loopback, inside the lab's provisioning
# networks (127.0.0.0/8), one address per machine so that every sshd can use the same port, as on a real site.
MACHINE_NET = "127.77"
MACHINE_PREFIX = 8
JUMP_USER = "jump"
LOGIN_USER = "root"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_net_usable() -> bool:
    """Whether this host answers on all of 127.0.0.0/8 (Linux does; macOS has only 127.0.0.1 on lo0 unless
    aliases are added). Without it the machines cannot have addresses of their own, so the lab has no SSH."""
    with socket.socket() as s:
        try:
            s.bind((f"{MACHINE_NET}.1.1", 0))
        except OSError:
            return False
    return True


def machine_addresses(machines: list[tuple[str, str]]) -> dict[str, str]:
    """hostname -> address, for (hostname, rack) in rack order then the order given."""
    racks = {name: r for r, name in enumerate(sorted({rack for _, rack in machines}), start=1)}
    counts: dict[str, int] = {}
    addresses = {}
    for hostname, rack in machines:
        counts[rack] = counts.get(rack, 0) + 1
        addresses[hostname] = f"{MACHINE_NET}.{racks[rack]}.{counts[rack]}"
    return addresses


class LabAccess:
    def __init__(self, key_dir: Path, machines: list[tuple[str, str]], *, jump_port: int = 0, ssh_port: int = 0):
        self.key_dir = key_dir
        self.addresses = machine_addresses(machines) if loopback_net_usable() else {}
        self.jump_port = jump_port
        self.ssh_port = ssh_port or free_port()
        self.jump: JumpHost | None = None

    def _key(self, name: str) -> asyncssh.SSHKey:
        return load_or_create_key(self.key_dir / name, f"{name}@lab")

    def start(self) -> None:
        """The site's bastion: forwards only to the machines' sshd addresses."""
        if not self.addresses:
            return
        allowed = {(address, self.ssh_port) for address in self.addresses.values()}
        self.jump = JumpHost(
            "127.0.0.1", self.jump_port, self._key("jump_host_key"), JUMP_USER,
            public_line(self._key("jump_client_key")), lambda host, port: (host, port) in allowed,
        )  # fmt: skip
        try:
            self.jump.start()
        except OSError as exc:
            self.jump = None
            raise RuntimeError(f"cannot bind the jump host to 127.0.0.1:{self.jump_port}: {exc.strerror}") from None

    def stop(self) -> None:
        if self.jump is not None:
            self.jump.stop()
            self.jump = None

    def inventory(self) -> dict:
        """The jump host and the login on installed machines, as the site's SSH access settings take them;
        nothing without SSH (the install's SSH check is then skipped: "no jump host")."""
        if self.jump is None:
            return {}
        return {
            "jump_host": {
                "address": self.jump.address,
                "port": self.jump.port,
                "username": JUMP_USER,
                "private_key": self._key("jump_client_key").export_private_key().decode(),
                "host_key": public_line(self._key("jump_host_key")),
            },
            "site_login": {
                "username": LOGIN_USER,
                "port": self.ssh_port,
                "private_key": self._key("site_login_key").export_private_key().decode(),
            },
        }
