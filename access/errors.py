"""Why an SSH connection through a site's jump hosts failed. No Django.

Each failure is its own class whose name is the machine-readable reason (``exc.reason``), the
message is for people. ``retryable`` tells the install engine whether trying again later can
help: an unreachable host may still be booting, a wrong key or host key will not fix itself.
"""


class AccessError(Exception):
    retryable = False

    def __init__(self, message: str, *, host: str = ""):
        super().__init__(message)
        self.message = message
        self.host = host

    @property
    def reason(self) -> str:
        return type(self).__name__


class AccessNotConfigured(AccessError):
    """The site or machine lacks what a connection needs (jump host, login key, an address)."""


class BastionUnreachable(AccessError):
    """A jump host did not answer (refused, no route, timed out) or dropped the connection."""

    retryable = True


class BastionHostKeyMismatch(AccessError):
    """A jump host offered a host key other than the pinned one: refused, nothing was sent."""


class BastionAuthFailed(AccessError):
    """A jump host refused the site's jump key."""


class TargetUnreachable(AccessError):
    """The last jump host could not open a connection to the machine, or the machine did not answer."""

    retryable = True


class TargetHostKeyMismatch(AccessError):
    """The machine offered a host key other than the one pinned for it: refused, nothing was run."""


class TargetHostKeyUnknown(AccessError):
    """No host key is pinned for the machine and this operation may not pin one."""


class TargetAuthFailed(AccessError):
    """The machine refused the site's login key (the install did not inject it, or a wrong user)."""


class VerifyTimeout(AccessError):
    """The verification did not finish within its timeout (connections and checks together)."""

    retryable = True
