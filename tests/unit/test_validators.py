import pytest
from django.core.exceptions import ValidationError

from inventory.validators import normalise_mac, validate_bmc_address, validate_hostname, validate_sha256


@pytest.mark.parametrize(
    "typed",
    [
        "aa:bb:cc:dd:ee:f0",
        "AA:BB:CC:DD:EE:F0",
        "aa-bb-cc-dd-ee-f0",
        "AABB.CCDD.EEF0",
        "aabbccddeef0",
        " aa:bb:cc:dd:ee:f0 ",
    ],
)
def test_mac_is_stored_in_one_canonical_form(typed):
    assert normalise_mac(typed) == "aa:bb:cc:dd:ee:f0"


@pytest.mark.parametrize(
    "typed, why",
    [
        ("aa:bb:cc:dd:ee:zz", "is not a MAC address"),
        ("aa:bb:cc:dd:ee", "is not a MAC address"),
        ("aa:bb-cc:dd:ee:ff", "is not a MAC address"),
        ("aa:bb:cc:dd:ee:ff:00", "is not a MAC address"),
        ("ff:ff:ff:ff:ff:ff", "broadcast, multicast or all-zero"),
        ("01:00:5e:00:00:01", "broadcast, multicast or all-zero"),
        ("00:00:00:00:00:00", "broadcast, multicast or all-zero"),
    ],
)
def test_malformed_mac_is_refused_naming_the_value(typed, why):
    with pytest.raises(ValidationError) as exc:
        normalise_mac(typed)
    message = exc.value.messages[0]
    assert f"“{typed}”" in message and why in message


@pytest.mark.parametrize("name", ["web01", "a", "rack-a-07.dc1.example.net", "x" * 63, "0node"])
def test_rfc1123_hostnames_pass(name):
    validate_hostname(name)


@pytest.mark.parametrize(
    "name, why",
    [
        ("-bad-", "may not start or end with a hyphen"),
        ("bad-", "may not start or end with a hyphen"),
        ("under_score", "letters, digits or hyphens"),
        ("a..b", "label “”"),
        ("x" * 64, "1-63"),
        ("Web01", "upper-case"),
        ("", "empty"),
        (("a" * 60 + ".") * 5, "longer than 253"),
    ],
)
def test_bad_hostnames_are_refused_with_the_reason(name, why):
    with pytest.raises(ValidationError) as exc:
        validate_hostname(name)
    assert why in exc.value.messages[0]
    assert f"“{name}”" in exc.value.messages[0]


def test_bmc_address_accepts_ips_and_names_and_refuses_a_broken_ipv4():
    for ok in ("10.0.0.30", "fe80::1", "ilo-r01-07.oob.example.net"):
        validate_bmc_address(ok)
    with pytest.raises(ValidationError, match="“10.0.0.300” is not a valid IPv4 address"):
        validate_bmc_address("10.0.0.300")
    with pytest.raises(ValidationError, match="neither an IP address nor a hostname"):
        validate_bmc_address("ilo_r01")


def test_sha256_must_be_64_hex_digits():
    validate_sha256("a" * 64)
    with pytest.raises(ValidationError, match="not a SHA-256 digest"):
        validate_sha256("A" * 64)
