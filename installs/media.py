"""An install's virtual media ISO: its name, the URL its BMC fetches it from, and the command line on it.

The ISO holds what a per-MAC boot config holds, the one-shot boot credential included, and is readable by
whoever has its URL, as a boot config is by whoever reads the TFTP root. Its name is therefore no token:
``<install id>-<HMAC of the install's nonce under a salt of its own>.iso``, which reveals no credential (an
access log showing it shows nothing usable) and cannot be guessed for another install. It is served only while
the install is active and removed when the install ends.
"""

from __future__ import annotations

import hmac
import re

from django.utils.crypto import salted_hmac

from provisioner import pxe
from provisioner.pxe import iso

from .plan import Plan

_NAME_SALT = "provisioner.installs.media-name"
_NAME = re.compile(r"^(?P<pk>[0-9]{1,18})-(?P<mac>[0-9a-f]{40})\.iso$")
URL_PREFIX = "boot/media/"


def _mac(nonce: str) -> str:
    return salted_hmac(_NAME_SALT, nonce, algorithm="sha256").hexdigest()[:40]


def iso_name(install) -> str:
    return f"{install.pk}-{_mac(install.token_nonce)}.iso"


def iso_url(install) -> str:
    """What the BMC is told to fetch: the site's URL for machines, which reaches this project's /boot/."""
    return f"{install.plan.site.base_url.rstrip('/')}/{URL_PREFIX}{iso_name(install)}"


def iso_path(install):
    return iso.media_path(install.plan.site.tftp_root, iso_name(install))


def install_id_for(name: str, nonce_of) -> int | None:
    """The install an ISO name belongs to, or None: ``nonce_of(pk)`` gives that install's nonce (or None)."""
    match = _NAME.match(name)
    if match is None:
        return None
    pk = int(match["pk"])
    nonce = nonce_of(pk)
    if nonce is None or not hmac.compare_digest(_mac(nonce), match["mac"]):
        return None
    return pk


def cmdline(plan: Plan, token: str) -> str:
    """The kernel command line on the ISO: the network boot's, and for the memory OS the machine's static
    address, since a site that boots by virtual media may have no DHCP for the agent either."""
    profile, machine = plan.profile, plan.machine
    line = pxe.kernel_cmdline(
        profile.method,
        mac=machine.mac,
        base_url=plan.site.base_url,
        token=token,
        hostname=machine.short,
        domain=machine.domain,
        extra_args="",
        legacy_anaconda=profile.legacy_anaconda,
    )
    extra = []
    if profile.method == "image" and machine.ip:
        extra.append(f"provisioner.ip={machine.ip}/{machine.prefix or 24}")
        if machine.gateway:
            extra.append(f"provisioner.gateway={machine.gateway}")
        if machine.dns:
            extra.append(f"provisioner.dns={','.join(machine.dns)}")
    return " ".join([line, *extra, *profile.kernel_args.split()])
