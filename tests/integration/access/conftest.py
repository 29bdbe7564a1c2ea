import getpass
from dataclasses import dataclass

import pytest

from tests.conftest import make_machine, make_rack, make_site

from . import sshd


@dataclass
class Lab:
    bastion: sshd.Sshd
    target: sshd.Sshd
    jump_key: str  # the bastion authorizes it
    login_key: str  # the target authorizes it
    stranger_key: str  # nobody authorizes it
    stranger_host_key_pub: str  # no server has it
    user: str
    workdir: object


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    why = sshd.available()
    if why:
        pytest.skip(why)
    keys = tmp_path_factory.mktemp("ssh-keys")
    jump_key, jump_pub = sshd.keygen(keys / "jump")
    login_key, login_pub = sshd.keygen(keys / "login")
    stranger_key, _ = sshd.keygen(keys / "stranger")
    _, stranger_host_pub = sshd.keygen(keys / "stranger_host")
    servers = tmp_path_factory.mktemp("sshd")
    bastion = sshd.start(servers, "bastion", authorized_keys=[jump_pub], forwarding=True)
    try:
        target = sshd.start(servers, "target", authorized_keys=[login_pub], forwarding=False)
    except Exception:
        bastion.stop()
        raise
    yield Lab(
        bastion,
        target,
        jump_key,
        login_key,
        stranger_key,
        stranger_host_pub,
        getpass.getuser(),
        tmp_path_factory.mktemp("work"),
    )
    target.stop()
    bastion.stop()


def add_jump_host(site, lab, *, order=1, port=None, host_key=None, key=None):
    from access.models import JumpHost

    hop = JumpHost(
        site=site,
        order=order,
        address="127.0.0.1",
        port=port or lab.bastion.port,
        username=lab.user,
        host_key=host_key or f"[127.0.0.1]:{lab.bastion.port} {lab.bastion.host_key_pub}",
    )
    hop.set_private_key(key or lab.jump_key)
    hop.save()
    return hop


def add_login(site, lab, *, port=None, key=None):
    from access.models import SiteLogin

    login = SiteLogin(site=site, username=lab.user, port=port or lab.target.port)
    login.set_private_key(key or lab.login_key)
    login.save()
    return login


def add_target(rack, lab, *, pin=True, **kw):
    """A machine whose PXE NIC address is the loopback target sshd."""
    from access.models import MachineHostKey

    kw.setdefault("position_u", rack.machines.count() + 1)  # racks refuse overlapping machines
    machine = make_machine(rack, **kw)
    machine.nics.update(ip="127.0.0.1", prefix_len=8)
    if pin:
        MachineHostKey.objects.create(machine=machine, host_key=lab.target.host_key_pub)
    return machine


@pytest.fixture
def site(db, lab):
    """A site reached through the bastion, with one rack."""
    site = make_site(domain="dc.example.test")
    add_jump_host(site, lab)
    add_login(site, lab)
    site.test_rack = make_rack(site, name="ra")
    return site


@dataclass
class ShellLab:
    """A target that grants shells and trusts whatever CA keys a test writes to ``trust_file``; it authorizes
    no key at all, so only a certificate logs in."""

    server: sshd.Sshd
    trust_file: object

    def trust(self, lines: list[str]) -> None:
        self.trust_file.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def shell_lab(lab, tmp_path_factory):
    servers = tmp_path_factory.mktemp("sshd-shell")
    trust_file = servers / "user_ca.pub"
    trust_file.write_text("")
    server = sshd.start(
        servers, "shell", authorized_keys=[], forwarding=False, trusted_user_ca_keys=trust_file, tty=True
    )
    yield ShellLab(server, trust_file)
    server.stop()


@pytest.fixture
def shell_site(db, lab, shell_lab):
    """A site whose machines are the shell target, reached through the bastion; its CA is trusted there."""
    from access.models import SiteCA

    site = make_site(domain="dc.example.test")
    add_jump_host(site, lab)
    add_login(site, lab, port=shell_lab.server.port)
    site.test_rack = make_rack(site, name="rs")
    shell_lab.trust(SiteCA.for_site(site).trusted_keys())
    return site


def add_shell_target(site, shell_lab, **kw):
    from access.models import MachineHostKey

    kw.setdefault("position_u", site.test_rack.machines.count() + 1)
    machine = make_machine(site.test_rack, **kw)
    machine.nics.update(ip="127.0.0.1", prefix_len=8)
    MachineHostKey.objects.create(machine=machine, host_key=shell_lab.server.host_key_pub)
    return machine
