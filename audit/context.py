"""The source address of the request being served, for audit entries written deep in a call."""

from contextvars import ContextVar

source_ip: ContextVar[str | None] = ContextVar("audit_source_ip", default=None)


def client_ip(request) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites
    # it, and an audit log that records a forged address is worse than one that records the proxy.
    return request.META.get("REMOTE_ADDR") or None
