"""PDU errors: the BMC taxonomy (provisioner.bmc.errors), worded for a PDU.

Each is a subclass of the matching BMC error, so every caller that already decides between "try again
later" and "fail now" on a BmcError (power actions, install steps) handles a PDU outlet the same way.
Messages name the PDU as ``address:port`` and the outlet; never the community or a v3 key.
"""

from __future__ import annotations

from provisioner.bmc.errors import BmcAuthError, BmcError, BmcTimeout, BmcUnreachable, BmcUnsupported


class PduError(BmcError):
    """Something went wrong talking to a PDU."""

    reason = "PduError"

    def __init__(self, endpoint: str, detail: str):
        self.endpoint = endpoint
        self.detail = detail
        Exception.__init__(self, f"PDU {endpoint}: {detail}")


class PduUnreachable(PduError, BmcUnreachable):
    """No answer, or the transport failed; worth retrying later."""

    reason = "PduUnreachable"


class PduTimeout(PduError, BmcTimeout):
    """No answer within our deadline (an SNMP v1/v2c agent also stays silent on a wrong community)."""

    reason = "PduTimeout"


class PduAuthError(PduError, BmcAuthError):
    """SNMPv3 credentials rejected, or the community/user may not write; never retried."""

    reason = "PduAuthError"


class PduUnsupported(PduError, BmcUnsupported):
    """The PDU refused the request, or answered with a value we cannot read."""

    reason = "PduUnsupported"


class OutletMissing(PduUnsupported):
    """The outlet number is not on this PDU (noSuchObject / noSuchInstance / noCreation)."""

    reason = "PduOutletMissing"


class PduWriteNotApplied(PduUnsupported):
    """The PDU accepted a command, but reading the outlet back does not show it applied."""

    reason = "PduWriteNotApplied"
