"""MAC address normalisation: every file name and answer file uses one spelling."""

import re

_COLON_OR_HYPHEN = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")
_CISCO_DOTTED = re.compile(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}")
_BARE = re.compile(r"[0-9a-f]{12}")


def normalise_mac(value: str) -> str:
    """Return `value` as lower-case colon form (aa:bb:cc:dd:ee:ff).

    Accepts aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff and aabbccddeeff; anything else raises
    ValueError naming the value, so a typo in an import never becomes a file name no loader asks for.
    """
    if not isinstance(value, str):
        raise ValueError(f"malformed MAC address: {value!r}")
    text = value.strip().lower()
    if _COLON_OR_HYPHEN.fullmatch(text):
        digits = text.replace(":", "").replace("-", "")
    elif _CISCO_DOTTED.fullmatch(text):
        digits = text.replace(".", "")
    elif _BARE.fullmatch(text):
        digits = text
    else:
        raise ValueError(f"malformed MAC address: {value!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def hyphenated(mac: str) -> str:
    """aa-bb-cc-dd-ee-ff: the spelling pxelinux, GRUB and BOOTIF use."""
    return normalise_mac(mac).replace(":", "-")
