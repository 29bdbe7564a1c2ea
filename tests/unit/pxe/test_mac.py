import pytest

from provisioner.pxe import normalise_mac
from provisioner.pxe.mac import MacAddressError, hyphenated


@pytest.mark.parametrize(
    "value",
    ["aa:bb:cc:dd:ee:0f", "AA-BB-CC-DD-EE-0F", "aabb.ccdd.ee0f", "AABBCCDDEE0F", "  aa:BB:cc:DD:ee:0f\n"],
)
def test_accepted_spellings_normalise_to_lower_colon_form(value):
    assert normalise_mac(value) == "aa:bb:cc:dd:ee:0f"
    assert hyphenated(value) == "aa-bb-cc-dd-ee-0f"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "aa:bb:cc:dd:ee",
        "aa:bb:cc:dd:ee:ff:00",
        "aa:bb-cc:dd:ee:ff",
        "gg:bb:cc:dd:ee:ff",
        "aabb.ccdd.eeff.0011",
        "aabbccddeef",
        "aa:bb:cc:dd:ee:ff/../x",
        None,
        0xAABBCCDDEEFF,
    ],
)
def test_malformed_mac_is_refused_naming_the_value(value):
    with pytest.raises(ValueError) as excinfo:
        normalise_mac(value)
    assert repr(value) in str(excinfo.value)


@pytest.mark.parametrize("value", ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "33-33-00-00-00-01", "000000000000"])
def test_broadcast_multicast_and_zero_are_no_nics_address(value):
    with pytest.raises(MacAddressError) as excinfo:
        normalise_mac(value)
    assert excinfo.value.problem == "not_unicast" and repr(value) in str(excinfo.value)
