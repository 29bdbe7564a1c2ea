"""How IPMI login failures and completion codes land in the taxonomy (the strings are pyghmi 1.6.19's own)."""

from __future__ import annotations

import pytest
from pyghmi.ipmi.private.constants import rmcp_codes

from provisioner.bmc import BmcAuthError, BmcBusy, BmcUnreachable
from provisioner.bmc.ipmi_loop import classify_login_error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("Incorrect password provided", BmcAuthError),
        (rmcp_codes[0xD] + " in RAKP2", BmcAuthError),  # unknown user
        (rmcp_codes[0x9] + " in RAKP2", BmcAuthError),  # role not allowed for this user
        (rmcp_codes[0xA], BmcAuthError),
        ("Invalid RAKP4 integrity code (wrong Kg?)", BmcAuthError),
        ("operator privilege refused (completion code 0x81)", BmcAuthError),
        (rmcp_codes[0x1], BmcBusy),  # every session slot taken
        ("timeout", BmcUnreachable),
        ("timeout waiting for the session privilege answer", BmcUnreachable),
        ("Session failed to initialize", BmcUnreachable),
    ],
)
def test_login_errors(error, kind):
    exc = classify_login_error("10.0.0.5:623", "admin", error)
    assert type(exc) is kind
    assert str(exc).startswith("BMC 10.0.0.5:623: ")
    assert error in str(exc)
