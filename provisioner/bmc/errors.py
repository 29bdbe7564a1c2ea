"""The BMC error taxonomy.

Callers decide between "try again later" and "fail now" with ``retryable`` alone:
unreachable, timeout and busy are transient; rejected credentials and refused commands are not, and
retrying a rejected password is how BMC accounts get locked.

Messages are for technicians: they name the BMC as ``address:port`` and never carry the password.
"""

from __future__ import annotations


class BmcError(Exception):
    """Something went wrong talking to a BMC."""

    retryable = False
    #: CamelCase, machine readable; stored as a failure reason by callers.
    reason = "BmcError"

    def __init__(self, endpoint: str, detail: str):
        self.endpoint = endpoint
        self.detail = detail
        super().__init__(f"BMC {endpoint}: {detail}")


class BmcUnreachable(BmcError):
    """No answer, or the connection broke; worth retrying later."""

    retryable = True
    reason = "BmcUnreachable"


class BmcTimeout(BmcUnreachable):
    """The BMC did not answer within our deadline."""

    reason = "BmcTimeout"


class BmcBusy(BmcError):
    """The BMC (or our guard in front of it) asked us to come back later."""

    retryable = True
    reason = "BmcBusy"

    def __init__(self, endpoint: str, detail: str, retry_after_s: float | None = None):
        super().__init__(endpoint, detail)
        #: When known, how long until trying again makes sense.
        self.retry_after_s = retry_after_s


class BmcAuthError(BmcError):
    """Credentials rejected or privilege too low; never retried, BMCs lock accounts."""

    reason = "BmcAuthError"


class BmcUnsupported(BmcError):
    """The BMC refused the command (not implemented, bad request, not in this state)."""

    reason = "BmcUnsupported"


class CapabilityMissing(BmcUnsupported):
    """The machine's driver does not declare what was asked of it; refused before any BMC is contacted."""

    reason = "CapabilityMissing"

    def __init__(self, endpoint: str, detail: str):
        super().__init__(endpoint, detail)
        self.args = (detail,)

    def __str__(self) -> str:
        return self.detail
