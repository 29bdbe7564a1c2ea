"""configure_network, set_hostname and ssh_keys write into the sandbox's target root, and only there."""

import configparser
import os
import shlex
import stat

import pytest

from provisioner.agent.tasks import TASKS, run_task

MAC = "52:54:00:AB:CD:EF"


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_netplan_static_matches_by_mac(sandbox, ctx):
    params = {"mac": MAC, "style": "netplan", "address": "10.0.0.5", "prefix": 24, "gateway": "10.0.0.1",
              "dns": ["10.0.0.2", "10.0.0.3"]}  # fmt: skip
    TASKS["configure_network"](ctx, params)
    path = sandbox.target / "etc/netplan/50-provisioner-enx525400abcdef.yaml"
    assert path.read_text().splitlines()[1:] == [
        "network:",
        "  version: 2",
        "  ethernets:",
        "    enx525400abcdef:",
        "      match:",
        '        macaddress: "52:54:00:ab:cd:ef"',
        "      set-name: enx525400abcdef",
        "      dhcp4: false",
        "      addresses:",
        '        - "10.0.0.5/24"',
        "      routes:",
        "        - to: default",
        '          via: "10.0.0.1"',
        "      nameservers:",
        "        addresses:",
        '          - "10.0.0.2"',
        '          - "10.0.0.3"',
    ]
    assert _mode(path) == 0o600


def test_netplan_without_address_is_dhcp(sandbox, ctx):
    TASKS["configure_network"](ctx, {"mac": MAC, "style": "netplan"})
    text = (sandbox.target / "etc/netplan/50-provisioner-enx525400abcdef.yaml").read_text()
    assert "      dhcp4: true\n" in text and "addresses" not in text and "macaddress" in text


def test_each_nic_gets_its_own_file(sandbox, ctx):
    TASKS["configure_network"](ctx, {"mac": MAC, "style": "netplan"})
    TASKS["configure_network"](
        ctx, {"mac": "52:54:00:00:00:02", "style": "netplan", "address": "10.9.0.5", "prefix": 16}
    )
    files = sorted(p.name for p in (sandbox.target / "etc/netplan").iterdir())
    assert files == ["50-provisioner-enx525400000002.yaml", "50-provisioner-enx525400abcdef.yaml"]


def test_networkmanager_keyfile_matches_by_mac(sandbox, ctx):
    params = {"mac": MAC, "style": "networkmanager", "address": "10.0.0.5", "prefix": 24, "gateway": "10.0.0.1",
              "dns": ["10.0.0.2"]}  # fmt: skip
    TASKS["configure_network"](ctx, params)
    path = sandbox.target / "etc/NetworkManager/system-connections/provisioner-enx525400abcdef.nmconnection"
    keyfile = configparser.ConfigParser(interpolation=None)
    keyfile.read_string(path.read_text())
    assert keyfile["connection"]["type"] == "ethernet"
    assert "interface-name" not in keyfile["connection"]
    assert keyfile["ethernet"]["mac-address"] == "52:54:00:AB:CD:EF"
    assert dict(keyfile["ipv4"]) == {"method": "manual", "address1": "10.0.0.5/24,10.0.0.1", "dns": "10.0.0.2;"}
    # NetworkManager ignores a keyfile anyone but root can read.
    assert _mode(path) == 0o600
    first_uuid = keyfile["connection"]["uuid"]
    TASKS["configure_network"](ctx, {"mac": MAC, "style": "networkmanager"})
    keyfile.read_string(path.read_text())
    assert keyfile["ipv4"]["method"] == "auto"
    assert keyfile["connection"]["uuid"] == first_uuid


def test_ifcfg_matches_by_hwaddr(sandbox, ctx):
    params = {"mac": MAC, "style": "ifcfg", "address": "192.0.2.10", "prefix": 26, "gateway": "192.0.2.1",
              "dns": ["192.0.2.53"]}  # fmt: skip
    TASKS["configure_network"](ctx, params)
    path = sandbox.target / "etc/sysconfig/network-scripts/ifcfg-provisioner-enx525400abcdef"
    values = dict(
        shlex.split(line)[0].split("=", 1) for line in path.read_text().splitlines() if not line.startswith("#")
    )
    assert values["HWADDR"] == "52:54:00:AB:CD:EF"
    assert "DEVICE" not in values
    assert (values["BOOTPROTO"], values["IPADDR"], values["PREFIX"]) == ("none", "192.0.2.10", "26")
    assert (values["GATEWAY"], values["DNS1"], values["ONBOOT"]) == ("192.0.2.1", "192.0.2.53", "yes")


@pytest.mark.parametrize(
    ("params", "field"),
    [({"mac": "52:54:00:ab:cd", "style": "netplan"}, "mac"),
     ({"mac": MAC, "style": "interfaces"}, "style"),
     ({"mac": MAC, "style": "netplan", "address": "10.0.0.5"}, "prefix"),
     ({"mac": MAC, "style": "netplan", "address": "10.0.0.300", "prefix": 24}, "address"),
     ({"mac": MAC, "style": "netplan", "dns": ["dns.example"]}, "dns")],
)  # fmt: skip
def test_bad_network_params_write_nothing(sandbox, ctx, params, field):
    result = run_task(ctx, "configure_network", params)
    assert (result.reason, result.message.split(":")[0]) == ("InvalidParams", field)
    assert list(sandbox.target.rglob("*")) == []


def test_set_hostname_writes_hostname_and_hosts(sandbox, ctx):
    (sandbox.target / "etc").mkdir()
    (sandbox.target / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 ubuntu\n10.1.1.1 mirror\n")
    TASKS["set_hostname"](ctx, {"hostname": "Web01.Example.NET"})
    assert (sandbox.target / "etc/hostname").read_text() == "web01.example.net\n"
    assert (sandbox.target / "etc/hosts").read_text().splitlines() == [
        "127.0.0.1 localhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "10.1.1.1 mirror",
        "127.0.1.1\tweb01.example.net web01",
    ]


@pytest.mark.parametrize("hostname", ["-web", "web_01", "a" * 64, "web..example", "web 01"])
def test_set_hostname_rejects_invalid_names(sandbox, ctx, hostname):
    result = run_task(ctx, "set_hostname", {"hostname": hostname})
    assert result.reason == "InvalidParams"
    assert not (sandbox.target / "etc/hostname").exists()


def test_ssh_keys_for_root_and_for_a_user_of_the_target(sandbox, ctx):
    (sandbox.target / "etc").mkdir()
    (sandbox.target / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\nops:x:1001:1002::/home/ops:/bin/sh\n")
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 ops@example"
    TASKS["ssh_keys"](ctx, {"user": "root", "keys": [key]})
    TASKS["ssh_keys"](ctx, {"user": "ops", "keys": [key, "ssh-rsa AAAAB3Nza second"]})
    TASKS["ssh_keys"](ctx, {"user": "ops", "keys": [key]})
    root_keys = sandbox.target / "root/.ssh/authorized_keys"
    ops_keys = sandbox.target / "home/ops/.ssh/authorized_keys"
    assert root_keys.read_text() == key + "\n"
    assert ops_keys.read_text() == f"{key}\nssh-rsa AAAAB3Nza second\n"
    assert _mode(ops_keys) == 0o600 and _mode(ops_keys.parent) == 0o700
    if os.geteuid() == 0:
        assert (ops_keys.stat().st_uid, ops_keys.stat().st_gid) == (1001, 1002)


def test_ssh_keys_unknown_user_and_bad_key(sandbox, ctx):
    assert run_task(ctx, "ssh_keys", {"user": "nobody", "keys": ["ssh-ed25519 AAAA"]}).reason == "UserNotFound"
    assert run_task(ctx, "ssh_keys", {"user": "root", "keys": ["not a key"]}).reason == "InvalidParams"
    assert run_task(ctx, "ssh_keys", {"user": "root", "keys": ["ssh-ed25519 A\nssh-rsa B"]}).reason == "InvalidParams"


def test_ssh_keys_makes_sshd_trust_the_site_ca(sandbox, ctx):
    (sandbox.target / "etc/ssh").mkdir(parents=True)
    ca = [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1 provisioner-user-ca@dc1",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA0 old",
    ]
    message = TASKS["ssh_keys"](ctx, {"user": "root", "keys": [], "ca_keys": ca})
    trust = sandbox.target / "etc/ssh/provisioner-user-ca.pub"
    drop_in = sandbox.target / "etc/ssh/sshd_config.d/50-provisioner-user-ca.conf"
    assert trust.read_text() == "\n".join(ca) + "\n" and _mode(trust) == 0o644
    assert drop_in.read_text() == "TrustedUserCAKeys /etc/ssh/provisioner-user-ca.pub\n" and _mode(drop_in) == 0o644
    assert _mode(drop_in.parent) == 0o755 and "2 CA key(s)" in message
    assert not (sandbox.target / "root/.ssh").exists()  # no personal key was asked for
    # After a rotation the task rewrites the list; the personal keys go where they always did.
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 ops@example"
    TASKS["ssh_keys"](ctx, {"user": "root", "keys": [key], "ca_keys": ca[:1]})
    assert trust.read_text() == ca[0] + "\n"
    assert (sandbox.target / "root/.ssh/authorized_keys").read_text() == key + "\n"
    assert run_task(ctx, "ssh_keys", {"user": "root", "keys": [], "ca_keys": ["nope"]}).reason == "InvalidParams"
    assert run_task(ctx, "ssh_keys", {"user": "root", "keys": []}).reason == "InvalidParams"


def test_symlinks_cannot_lead_writes_out_of_the_target(sandbox, ctx, tmp_path):
    outside = tmp_path / "host-etc"
    outside.mkdir()
    os.symlink(outside, sandbox.target / "etc")
    result = run_task(ctx, "set_hostname", {"hostname": "web01"})
    assert result.reason == "UnsafeTargetPath"
    assert list(outside.iterdir()) == []
    (sandbox.target / "etc").unlink()
    (sandbox.target / "root").mkdir()
    os.symlink("/root/.ssh", sandbox.target / "root/.ssh")
    result = run_task(ctx, "ssh_keys", {"user": "root", "keys": ["ssh-ed25519 AAAA"]})
    assert result.reason == "UnsafeTargetPath"
