"""MAC address normalisation: every file name, answer file and inventory row uses one spelling.

The one rule for a NIC's MAC address, used by the PXE files and by inventory (which turns the error into
a form message): one of the common notations, and a unicast address that is not all zero (a broadcast or
multicast address is never a NIC's own, so a row holding one is a typo that would never boot).
"""

import re

_COLON_OR_HYPHEN = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")
_CISCO_DOTTED = re.compile(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}")
_BARE = re.compile(r"[0-9a-f]{12}")


class MacAddressError(ValueError):
    """`value` is not a NIC's MAC address; `problem` says why: "malformed" or "not_unicast"."""

    def __init__(self, value: object, problem: str):
        self.value = value
        self.problem = problem
        what = "malformed MAC address" if problem == "malformed" else "not a NIC's (unicast) MAC address"
        super().__init__(f"{what}: {value!r}")


def normalise_mac(value: str) -> str:
    """Return `value` as lower-case colon form (aa:bb:cc:dd:ee:ff).

    Accepts aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff and aabbccddeeff; anything else, and a
    broadcast, multicast or all-zero address, raises MacAddressError (a ValueError) naming the value, so a
    typo in an import never becomes a file name no loader asks for.
    """
    if not isinstance(value, str):
        raise MacAddressError(value, "malformed")
    text = value.strip().lower()
    if _COLON_OR_HYPHEN.fullmatch(text):
        digits = text.replace(":", "").replace("-", "")
    elif _CISCO_DOTTED.fullmatch(text):
        digits = text.replace(".", "")
    elif _BARE.fullmatch(text):
        digits = text
    else:
        raise MacAddressError(value, "malformed")
    if digits == "000000000000" or int(digits[1], 16) & 1:  # the group bit: broadcast and multicast
        raise MacAddressError(value, "not_unicast")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def hyphenated(mac: str) -> str:
    """aa-bb-cc-dd-ee-ff: the spelling pxelinux, GRUB and BOOTIF use."""
    return normalise_mac(mac).replace(":", "-")
