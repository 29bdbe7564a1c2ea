"""Tasks that edit the installed system's root: configure_network, set_hostname, ssh_keys.

ssh_keys also makes the system's sshd trust the site's SSH user CA (``ca_keys``): short-lived certificates
the control plane signs per session log in, and nobody's long-lived key needs to be on the machine.

Every write goes through `_target_file`, which refuses a path that resolves outside the target root: the image
may hold absolute symlinks that, followed from the memory OS, would point at the memory OS's own files (or, in
the sandbox, at the host's).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
import uuid
from pathlib import Path

import provisioner.agent.tasks.params as p
from provisioner.agent.context import Context
from provisioner.agent.results import TaskFailed

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)  # fmt: skip
NETWORK_STYLES = ("netplan", "networkmanager", "ifcfg")
# A fixed namespace makes the NetworkManager connection UUID a function of the MAC: rerunning the task rewrites
# the same connection instead of adding a second one.
_NM_NAMESPACE = uuid.UUID("6f1c2a4e-0b7d-4f54-9a38-6f3e2d1c0b9a")


def _target_file(ctx: Context, relative: str) -> Path:
    root = Path(os.path.realpath(ctx.host.target_root()))
    path = Path(os.path.realpath(root / relative.lstrip("/")))
    if path != root and root not in path.parents:
        raise TaskFailed("UnsafeTargetPath", f"/{relative.lstrip('/')} resolves outside the target root, to {path}")
    return path


def _write(path: Path, content: str, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Temp file in the same directory, fsync, rename: a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(f.fileno(), *owner)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- configure_network ------------------------------------------------------------------------------------------


def interface_name(mac: str) -> str:
    """systemd's MAC naming scheme (`enx` + the MAC's hex): stable, unique, and within the 15 characters allowed."""
    return "enx" + mac.replace(":", "")


def _network_params(params: dict) -> dict:
    mac = p.text(params, "mac").lower().replace("-", ":")
    if not _MAC.match(mac):
        raise p.invalid("mac", "a MAC address like aa:bb:cc:dd:ee:ff is required")
    style = params.get("style")
    if style not in NETWORK_STYLES:
        raise p.invalid("style", f"one of {list(NETWORK_STYLES)} is required")
    out = {"mac": mac, "style": style, "name": interface_name(mac), "interface": None, "gateway": None, "dns": []}
    if params.get("address") not in (None, ""):
        address = p.text(params, "address")
        prefix = params.get("prefix")
        if isinstance(prefix, bool) or not isinstance(prefix, int):
            raise p.invalid("prefix", "an integer prefix length is required with an address")
        try:
            out["interface"] = ipaddress.ip_interface(f"{address}/{prefix}")
        except ValueError as exc:
            raise p.invalid("address", str(exc)) from None
    if params.get("gateway") not in (None, ""):
        try:
            out["gateway"] = ipaddress.ip_address(p.text(params, "gateway"))
        except ValueError as exc:
            raise p.invalid("gateway", str(exc)) from None
    for server in p.text_list(params, "dns", default=[], allow_empty=True):
        try:
            out["dns"].append(ipaddress.ip_address(server))
        except ValueError as exc:
            raise p.invalid("dns", str(exc)) from None
    return out


def render_netplan(net: dict) -> str:
    name, iface = net["name"], net["interface"]
    lines = [
        "# Written by the provisioner agent. The NIC is matched by MAC: names change with PCI slots and firmware.",
        "network:",
        "  version: 2",
        "  ethernets:",
        f"    {name}:",
        "      match:",
        f'        macaddress: "{net["mac"]}"',
        f"      set-name: {name}",
    ]
    if iface is None:
        lines.append("      dhcp4: true")
    else:
        lines += ["      dhcp4: false", "      addresses:", f'        - "{iface.with_prefixlen}"']
    if net["gateway"] is not None:
        lines += ["      routes:", "        - to: default", f'          via: "{net["gateway"]}"']
    if net["dns"]:
        lines += ["      nameservers:", "        addresses:"] + [f'          - "{d}"' for d in net["dns"]]
    return "\n".join(lines) + "\n"


def render_nmconnection(net: dict) -> str:
    iface, gateway = net["interface"], net["gateway"]
    family = "ipv6" if iface is not None and iface.version == 6 else "ipv4"
    other = "ipv4" if family == "ipv6" else "ipv6"
    lines = [
        "# Written by the provisioner agent. No interface-name: the profile applies to the NIC with this MAC.",
        "[connection]",
        f"id=provisioner-{net['name']}",
        f"uuid={uuid.uuid5(_NM_NAMESPACE, net['mac'])}",
        "type=ethernet",
        "autoconnect=true",
        # Above the auto-created "Wired connection 1" profiles, which would otherwise race for the NIC.
        "autoconnect-priority=100",
        "",
        "[ethernet]",
        f"mac-address={net['mac'].upper()}",
        "",
        f"[{family}]",
    ]
    if iface is None:
        lines.append("method=auto")
    else:
        lines.append("method=manual")
        lines.append(f"address1={iface.with_prefixlen}" + (f",{gateway}" if gateway is not None else ""))
    dns = [str(d) for d in net["dns"] if d.version == (6 if family == "ipv6" else 4)]
    if dns:
        lines.append("dns=" + "".join(f"{d};" for d in dns))
    lines += ["", f"[{other}]", "method=auto" if other == "ipv6" else "method=disabled"]
    return "\n".join(lines) + "\n"


def render_ifcfg(net: dict) -> str:
    iface, gateway = net["interface"], net["gateway"]
    lines = [
        "# Written by the provisioner agent. No DEVICE=: the NIC is found by HWADDR, not by its name.",
        f"NAME=provisioner-{net['name']}",
        "TYPE=Ethernet",
        f"HWADDR={net['mac'].upper()}",
        "ONBOOT=yes",
    ]
    if iface is None:
        lines.append("BOOTPROTO=dhcp")
    elif iface.version == 4:
        lines += ["BOOTPROTO=none", f"IPADDR={iface.ip}", f"PREFIX={iface.network.prefixlen}"]
        if gateway is not None:
            lines += [f"GATEWAY={gateway}", "DEFROUTE=yes"]
    else:
        lines += ["BOOTPROTO=none", "IPV6INIT=yes", "IPV6_AUTOCONF=no", f"IPV6ADDR={iface.with_prefixlen}"]
        if gateway is not None:
            lines.append(f"IPV6_DEFAULTGW={gateway}")
    lines += [f"DNS{i}={d}" for i, d in enumerate(net["dns"], start=1)]
    return "\n".join(lines) + "\n"


# One file per NIC, named after it: configuring a second NIC adds to the first instead of replacing it.
NETWORK_FILES = {
    "netplan": ("etc/netplan/50-provisioner-{name}.yaml", render_netplan),
    "networkmanager": ("etc/NetworkManager/system-connections/provisioner-{name}.nmconnection", render_nmconnection),
    "ifcfg": ("etc/sysconfig/network-scripts/ifcfg-provisioner-{name}", render_ifcfg),
}


def configure_network(ctx: Context, params: dict) -> str:
    net = _network_params(params)
    relative, render = NETWORK_FILES[net["style"]]
    relative = relative.format(name=net["name"])
    content = render(net)
    # 0600: NetworkManager ignores keyfiles others can read, netplan warns about world-readable files.
    _write(_target_file(ctx, relative), content, 0o600)
    ctx.progress(100, f"/{relative} written for {net['mac']}")
    return f"/{relative}\n{content}"


# -- set_hostname -----------------------------------------------------------------------------------------------


def set_hostname(ctx: Context, params: dict) -> str:
    hostname = p.text(params, "hostname").lower().rstrip(".")
    if len(hostname) > 253 or not all(_LABEL.match(label) for label in hostname.split(".")):
        raise p.invalid("hostname", "letters, digits and hyphens in dot-separated labels of 1-63 characters")
    short = hostname.split(".")[0]
    _write(_target_file(ctx, "etc/hostname"), hostname + "\n", 0o644)

    hosts = _target_file(ctx, "etc/hosts")
    try:
        existing = hosts.read_text().splitlines()
    except FileNotFoundError:
        existing = []
    # 127.0.1.1 is the Debian convention for the machine's own name; any earlier one is the image's default.
    kept = [line for line in existing if line.split()[:1] != ["127.0.1.1"]]
    if not any(line.split()[:1] == ["127.0.0.1"] for line in kept):
        kept.insert(0, "127.0.0.1\tlocalhost")
    if not any(line.split()[:1] == ["::1"] for line in kept):
        kept.insert(1, "::1\tlocalhost ip6-localhost ip6-loopback")
    names = hostname if short == hostname else f"{hostname} {short}"
    kept.append(f"127.0.1.1\t{names}")
    _write(hosts, "\n".join(kept) + "\n", 0o644)
    ctx.progress(100, f"hostname set to {hostname}")
    return hostname


# -- ssh_keys ---------------------------------------------------------------------------------------------------


def _passwd_entry(ctx: Context, user: str) -> tuple[str, int, int]:
    try:
        lines = _target_file(ctx, "etc/passwd").read_text().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 7 and fields[0] == user:
            return fields[5], int(fields[2]), int(fields[3])
    if user == "root":
        return "/root", 0, 0
    raise TaskFailed("UserNotFound", f"the target's /etc/passwd has no user {user}")


# sshd reads these (Debian 12, Ubuntu 22.04+, EL9 include sshd_config.d/*.conf from sshd_config).
CA_TRUST_FILE = "etc/ssh/provisioner-user-ca.pub"
CA_DROP_IN = "etc/ssh/sshd_config.d/50-provisioner-user-ca.conf"


def _check_keys(keys: list[str], field: str) -> None:
    for i, key in enumerate(keys):
        if not any(token in KEY_TYPES for token in key.split()):
            raise p.invalid(f"{field}[{i}]", "not an OpenSSH public key line")


def _trust_ca(ctx: Context, ca_keys: list[str]) -> None:
    """The CA keys (current first, previous after it) and the drop-in naming them, both 0644 (sshd only reads
    them; the public keys are no secret)."""
    _write(_target_file(ctx, CA_TRUST_FILE), "\n".join(k.strip() for k in ca_keys) + "\n", 0o644)
    drop_in = _target_file(ctx, CA_DROP_IN)
    drop_in.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _write(drop_in, f"TrustedUserCAKeys /{CA_TRUST_FILE}\n", 0o644)


def ssh_keys(ctx: Context, params: dict) -> str:
    user = p.text(params, "user")
    ca_keys = p.text_list(params, "ca_keys", default=[], allow_empty=True)
    keys = p.text_list(params, "keys", allow_empty=bool(ca_keys))
    _check_keys(keys, "keys")
    _check_keys(ca_keys, "ca_keys")
    if ca_keys:
        _trust_ca(ctx, ca_keys)
    if not keys:
        ctx.progress(100, f"{len(ca_keys)} CA key(s) trusted")
        return f"/{CA_TRUST_FILE}: {len(ca_keys)} CA key(s)"
    home, uid, gid = _passwd_entry(ctx, user)
    ssh_dir = _target_file(ctx, f"{home}/.ssh")
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    if os.geteuid() == 0:
        os.chown(ssh_dir, uid, gid, follow_symlinks=False)
    path = _target_file(ctx, f"{home}/.ssh/authorized_keys")
    try:
        existing = path.read_text().splitlines()
    except FileNotFoundError:
        existing = []
    merged = list(dict.fromkeys([*existing, *(k.strip() for k in keys)]))
    # sshd's StrictModes refuses an authorized_keys that others can write or that the user does not own.
    _write(path, "\n".join(merged) + "\n", 0o600, owner=(uid, gid))
    added = len(merged) - len(existing)
    trusted = f"; /{CA_TRUST_FILE}: {len(ca_keys)} CA key(s)" if ca_keys else ""
    ctx.progress(100, f"{added} key(s) added for {user}" + (f", {len(ca_keys)} CA key(s) trusted" if ca_keys else ""))
    return f"{home}/.ssh/authorized_keys: {len(merged)} key(s), {added} new{trusted}"
