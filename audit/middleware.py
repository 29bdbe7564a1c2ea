from .context import client_ip, source_ip


class SourceAddressMiddleware:
    """Make the client's address available to audit.record() for the length of the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = source_ip.set(client_ip(request))
        try:
            return self.get_response(request)
        finally:
            source_ip.reset(token)
