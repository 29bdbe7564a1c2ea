"""Virtual media: a capability only some drivers have (registry.Capability.VIRTUAL_MEDIA).

The BMC attaches an ISO it fetches itself by URL as a virtual CD; the machine boots from it once
(``set_boot_device(BootDevice.CD)``) and the media is ejected afterwards. Drivers without it raise
:class:`~provisioner.bmc.errors.BmcUnsupported` from all three methods.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

#: BMCs keep the image URL in a field of their own; iDRAC and iLO refuse much longer ones.
MAX_URL = 1024
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class Media:
    """What the BMC's virtual CD holds now."""

    device: str  # the BMC's id of the virtual media device (Redfish ``VirtualMedia.Id``, e.g. "Cd")
    inserted: bool
    image: str = ""  # the URL the BMC fetches, "" when empty
    image_name: str = ""  # what the BMC calls it (its file name), "" when it does not say


@runtime_checkable
class VirtualMediaDriver(Protocol):
    def insert_media(self, url: str) -> None:
        """Attach the ISO at ``url`` as the virtual CD. The same URL already inserted is success (nothing sent);
        another image is ejected first."""

    def eject_media(self) -> bool:
        """Detach what the virtual CD holds; True if something was ejected, False if it was empty already."""

    def media(self) -> Media:
        """What the virtual CD holds."""


def url_problem(url: str) -> str:
    """Why a BMC cannot be handed ``url`` as an image, or "" when it can: an http(s) URL naming a host, no spaces
    or control characters, of a length BMCs keep."""
    if not isinstance(url, str) or not url:
        return "the image URL is empty"
    if len(url) > MAX_URL:
        return f"the image URL is longer than {MAX_URL} characters"
    if _CONTROL.search(url):
        return "the image URL contains a space or a control character"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"the image URL must be http:// or https:// with a host, not {url[:60]!r}"
    return ""
