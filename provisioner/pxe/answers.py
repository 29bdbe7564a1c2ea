"""Installer answer files (preseed, kickstart, autoinstall) and the kernel command lines that fetch them.

Templates are edited by admins, so they render in Jinja2's sandbox from a plain dict: no model instance, no
attribute that reaches outside the data, and within bounds of time, memory and size (provisioner.pxe.sandbox).
A mistake in a template is reported with its line, never rendered as an empty string into a file a machine
will act on.
"""

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from provisioner.pxe.mac import normalise_mac
from provisioner.pxe.sandbox import render as render_bounded
from provisioner.pxe.storage import Layout, single
from provisioner.pxe.storage import context as storage_context


class Method(StrEnum):
    PRESEED = "preseed"  # debian-installer fetches preseed.cfg
    KICKSTART = "kickstart"  # anaconda fetches ks.cfg
    AUTOINSTALL = "autoinstall"  # Ubuntu subiquity reads cloud-init NoCloud user-data + meta-data
    IMAGE = "image"  # the memory OS boots and its agent writes an image


@dataclass(frozen=True)
class AnswerFile:
    """One file an installer fetches from /i/<boot credential>/<name>."""

    name: str  # the last part of its URL
    method: Method  # the install method whose installer fetches it
    preview: str  # what `manage.py render --file` and the machine page call it; its urls key with "_" for "-"


# The one table of which answer files each install method serves: the URL route, the answer-file view, the
# templates' urls and the previews all read it.
ANSWER_FILES = (
    AnswerFile("preseed.cfg", Method.PRESEED, "preseed"),
    AnswerFile("ks.cfg", Method.KICKSTART, "kickstart"),
    AnswerFile("user-data", Method.AUTOINSTALL, "user-data"),
    AnswerFile("meta-data", Method.AUTOINSTALL, "meta-data"),
)


def answer_files(method: Method | str) -> tuple[AnswerFile, ...]:
    """The answer files an install of `method` serves (none for an image install)."""
    return tuple(file for file in ANSWER_FILES if file.method == method)


def answer_file_named(name: str) -> AnswerFile | None:
    return next((file for file in ANSWER_FILES if file.name == name), None)


EVENT_KINDS = ("started", "progress", "finished", "failed")
_HOSTNAME_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


@dataclass(frozen=True)
class StaticAddress:
    """A static IPv4/IPv6 address for the PXE NIC; without one the installer uses DHCP."""

    address: str
    prefix: int
    gateway: str | None = None
    dns: tuple[str, ...] = ()


def _check_token(token: str, what: str) -> None:
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"{what} must be 16-128 URL-safe characters")


def _base(base_url: str) -> str:
    """The site's base URL without its trailing slash; ValueError when it is not one."""
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", base_url):
        raise ValueError(f"base URL must be http(s)://host[/path]: {base_url!r}")
    return base_url.rstrip("/")


def _answer_urls(base_url: str, token: str) -> dict[str, str]:
    """The answer files' URLs: what a boot file points the installer at, carrying the boot credential."""
    base = _base(base_url)
    _check_token(token, "boot credential")
    seed = f"{base}/i/{token}/"
    urls = {"base": base, "seed": seed}
    urls.update({file.preview.replace("-", "_"): f"{seed}{file.name}" for file in ANSWER_FILES})
    return urls


def discovery_cmdline(base_url: str, extra_args: str = "") -> str:
    """The memory OS's command line in discovery mode (docs/agent-api.md, Discovery): no token, only where to
    register. `extra_args` (the memory OS profile's own, e.g. console=) come last; BOOTIF is the loader's."""
    return " ".join(["provisioner.mode=discover", f"provisioner.url={_base(base_url)}", *extra_args.split()])


def install_urls(base_url: str, token: str, callback_token: str) -> dict[str, Any]:
    """The per-install URLs: the answer files' (the one-shot boot credential `token`, spent when the answer
    file is fetched) and the installer's callbacks (`callback_token`, which appears only in answer files)."""
    urls: dict[str, Any] = _answer_urls(base_url, token)
    _check_token(callback_token, "callback token")
    if callback_token == token:
        raise ValueError("the callback token must not be the boot credential")
    events = f"{urls['base']}/i/{callback_token}/events/"
    urls["events"] = {kind: f"{events}{kind}" for kind in EVENT_KINDS}
    return urls


def _check_hostname(hostname: str, domain: str) -> None:
    if not _HOSTNAME_LABEL.fullmatch(hostname):
        raise ValueError(f"hostname must be one RFC 1123 label in lower case: {hostname!r}")
    if domain and not all(_HOSTNAME_LABEL.fullmatch(label) for label in domain.split(".")):
        raise ValueError(f"malformed domain: {domain!r}")


def _network(static: StaticAddress | None) -> dict[str, Any] | None:
    if static is None:
        return None
    interface = ipaddress.ip_interface(f"{static.address}/{static.prefix}")
    gateway = str(ipaddress.ip_address(static.gateway)) if static.gateway else None
    return {
        "address": str(interface.ip),
        "prefix": interface.network.prefixlen,
        "netmask": str(interface.netmask),
        "cidr": str(interface.with_prefixlen),
        "gateway": gateway,
        "dns": [str(ipaddress.ip_address(a)) for a in static.dns],
        "ipv6": interface.version == 6,
    }


# Where an installed machine keeps the site's SSH user CA keys, and the sshd drop-in that trusts them: the same
# paths the agent's ssh_keys task writes (provisioner/agent/tasks/target.py).
SSH_CA_FILE = "/etc/ssh/provisioner-user-ca.pub"
SSH_CA_CONFIG = "/etc/ssh/sshd_config.d/50-provisioner-user-ca.conf"


def install_context(
    *,
    hostname: str,
    domain: str,
    mac: str,
    base_url: str,
    token: str,
    callback_token: str,
    disk: str,
    root_password_hash: str,
    ssh_keys: Iterable[str] = (),
    ssh_ca_keys: Iterable[str] = (),
    network: StaticAddress | None = None,
    timezone: str = "Etc/UTC",
    storage: Layout | None = None,
) -> dict[str, Any]:
    """The plain dict every answer-file template renders from. `token` is the boot credential (in the
    answer files' own URLs), `callback_token` the one the installer's callbacks carry.

    Keys: hostname, domain, fqdn, mac, disk, disk_name, root_password_hash, ssh_keys, ssh_ca_keys (the site's SSH user
    CA keys the installed sshd trusts, see SSH_CA_FILE), ssh_ca_file, ssh_ca_config, timezone, instance_id,
    network (None for DHCP, else address/prefix/netmask/cidr/gateway/dns/ipv6), urls (base, seed, preseed,
    kickstart, user_data, meta_data, events.started|progress|finished|failed), storage (the disk layout:
    kind, devices, lvm, efi, and its renderings preseed, kickstart and autoinstall; see
    provisioner.pxe.storage). Without `storage` the layout is provisioner.pxe.storage.single(disk).
    """
    _check_hostname(hostname, domain)
    if not re.fullmatch(r"/dev/[A-Za-z0-9/_.:-]+", disk):
        raise ValueError(f"disk must be a /dev path: {disk!r}")
    keys = [k.strip() for k in ssh_keys]
    ca_keys = [k.strip() for k in ssh_ca_keys]
    for key in keys + ca_keys:
        if not key or "\n" in key or "'" in key:
            raise ValueError("an SSH key must be one line without single quotes")
    if not root_password_hash.startswith("$") or any(c.isspace() for c in root_password_hash):
        raise ValueError("root password must be a crypt(3) hash such as $6$...")
    return {
        "hostname": hostname,
        "domain": domain,
        "fqdn": f"{hostname}.{domain}" if domain else hostname,
        "mac": normalise_mac(mac),
        "disk": disk,
        "disk_name": disk.removeprefix("/dev/"),
        "root_password_hash": root_password_hash,
        "ssh_keys": keys,
        "ssh_ca_keys": ca_keys,
        "ssh_ca_file": SSH_CA_FILE,
        "ssh_ca_config": SSH_CA_CONFIG,
        "timezone": timezone,
        # cloud-init runs its once-per-instance modules again only when this changes: one per install.
        "instance_id": "i-" + hashlib.sha256(token.encode()).hexdigest()[:16],
        "network": _network(network),
        "urls": install_urls(base_url, token, callback_token),
        "storage": storage_context(storage or single(disk)),
    }


def _check_plain(value: Any, where: str = "context") -> None:
    if value is None or isinstance(value, str | int | float | bool):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}")
            _check_plain(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(f"{where} must hold only plain data, not {type(value).__name__}")


def render_template(source: str, context: Mapping[str, Any], *, template: str = "") -> str:
    """Render an admin-edited template from a plain dict, within the render bounds; any failure raises
    TemplateError with its line (and the bound, when one was hit). ``template`` names it in errors."""
    _check_plain(context)
    return render_bounded(source, context, template=template)


def kernel_cmdline(
    method: Method | str,
    *,
    mac: str,
    base_url: str,
    token: str,
    hostname: str = "",
    domain: str = "",
    extra_args: str = "",
    legacy_anaconda: bool = False,
) -> str:
    """The installer's kernel command line for `method`, pointing it at this install's files.

    `token` is the boot credential: the only secret a boot file carries. The install NIC is always chosen
    by MAC. BOOTIF is not included: the boot config adds it (see provisioner.pxe.bootconfig). `extra_args`
    (the profile's own, e.g. console= or inst.repo=) come last.
    `legacy_anaconda` selects the ks=/ksdevice= spelling of CentOS 7's anaconda.
    """
    method = Method(method)
    mac = normalise_mac(mac)
    urls = _answer_urls(base_url, token)
    if method is Method.PRESEED:
        _check_hostname(hostname, domain)
        # With auto=true the installer asks for the host name before it has the preseed file, so it goes here.
        args = [
            "auto=true",
            "priority=critical",
            f"url={urls['preseed']}",
            f"netcfg/choose_interface={mac}",
            f"netcfg/get_hostname={hostname}",
            f"netcfg/get_domain={domain}",
        ]
    elif method is Method.KICKSTART:
        if legacy_anaconda:
            args = [f"ks={urls['kickstart']}", f"ksdevice={mac}", "ip=dhcp"]
        else:
            args = [f"inst.ks={urls['kickstart']}", f"inst.ks.device={mac}", "ip=dhcp"]
    elif method is Method.AUTOINSTALL:
        # cloud-config-url=/dev/null stops cloud-init from reading casper's url= (the ISO) as a config.
        args = ["autoinstall", f"ds=nocloud-net;s={urls['seed']}", "ip=dhcp", "cloud-config-url=/dev/null"]
    else:
        args = [f"provisioner.url={urls['base']}", f"provisioner.token={token}"]
    return " ".join([*args, *extra_args.split()])
