import pytest

from provisioner.pxe import normalise_mac
from provisioner.pxe.mac import hyphenated


@pytest.mark.parametrize(
    "value",
    ["aa:bb:cc:dd:ee:0f", "AA-BB-CC-DD-EE-0F", "aabb.ccdd.ee0f", "AABBCCDDEE0F", "  aa:BB:cc:DD:ee:0f\n"],
)
def test_accepted_spellings_normalise_to_lower_colon_form(value):
    assert normalise_mac(value) == "aa:bb:cc:dd:ee:0f"
    assert hyphenated(value) == "aa-bb-cc-dd-ee-0f"


@pytest.mark.parametrize(
    "value",
    ["", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa:bb-cc:dd:ee:ff", "gg:bb:cc:dd:ee:ff", "aabb.ccdd.eeff.0011",
     "aabbccddeef", "aa:bb:cc:dd:ee:ff/../x", None, 0xAABBCCDDEEFF],
)
def test_malformed_mac_is_refused_naming_the_value(value):
    with pytest.raises(ValueError) as excinfo:
        normalise_mac(value)
    assert repr(value) in str(excinfo.value)
