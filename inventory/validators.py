"""Input checks for inventory fields. Messages name the value so a technician can find the typo."""

import re

from django.core.exceptions import ValidationError

from provisioner.pxe import mac as pxe_mac

_MAC_MESSAGES = {
    "malformed": "“%(value)s” is not a MAC address: expected six pairs of hex digits such as aa:bb:cc:dd:ee:ff.",
    "not_unicast": "“%(value)s” is not a NIC's MAC address: it is a broadcast, multicast or all-zero address.",
}

# RFC 1123 host label: letters, digits and hyphens, 1-63 characters, no hyphen at either end.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_mac(value: str) -> str:
    """Canonical form ``aa:bb:cc:dd:ee:ff`` of a MAC typed in any common notation (provisioner.pxe.mac's
    rule), refusals as a ValidationError whose message names the value for the form or import row."""
    try:
        return pxe_mac.normalise_mac(str(value))
    except pxe_mac.MacAddressError as exc:
        message = _MAC_MESSAGES[exc.problem]
    raise ValidationError(message, code="invalid_mac", params={"value": value})


def validate_hostname(value: str) -> None:
    """A hostname per RFC 1123: dot-separated labels, total at most 253 characters, lower case."""
    text = str(value)
    problem = None
    if not text:
        problem = "it is empty"
    elif len(text) > 253:
        problem = "it is longer than 253 characters"
    elif text != text.lower():
        problem = "it has upper-case letters (hostnames are stored in lower case)"
    else:
        for label in text.split("."):
            if not _LABEL.match(label):
                problem = (
                    f"the label “{label}” must be 1-63 letters, digits or hyphens "
                    "and may not start or end with a hyphen"
                )
                break
    if problem:
        raise ValidationError(
            "“%(value)s” is not a valid hostname: %(problem)s.",
            code="invalid_hostname",
            params={"value": value, "problem": problem},
        )


def validate_sha256(value: str) -> None:
    if value and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValidationError(
            "“%(value)s” is not a SHA-256 digest: expected 64 lower-case hex digits.",
            code="invalid_sha256",
            params={"value": value},
        )


def validate_bmc_address(value: str) -> None:
    """A BMC is reached by IP address or DNS name."""
    from django.core.validators import validate_ipv46_address

    try:
        validate_ipv46_address(value)
        return
    except ValidationError:
        pass
    if re.fullmatch(r"[0-9.]+", value or ""):
        # Looks like an IPv4 address but is not one (10.0.0.300): say so rather than
        # accepting it as a DNS name that will never resolve.
        raise ValidationError("“%(value)s” is not a valid IPv4 address.", code="invalid_ip", params={"value": value})
    try:
        validate_hostname(value.lower())
    except ValidationError:
        raise ValidationError(
            "“%(value)s” is neither an IP address nor a hostname.", code="invalid_address", params={"value": value}
        ) from None
