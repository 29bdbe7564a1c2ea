"""Who is on a websocket: a browser's session, or a script's API token.

A handshake with ``Authorization: Token <key>`` is a script (accounts/api_tokens.py, as for the REST API): the
token alone authenticates it, and neither the session cookie nor the Origin check applies. The Origin check
protects cookie-authenticated sockets from other sites' pages (cross-site websocket hijacking); a browser
cannot put an Authorization header on a websocket, so a token handshake cannot come from such a page. Any
other handshake goes through the Origin check and the session, as before. A token that is not valid is refused
before any consumer runs.
"""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier

from .api_tokens import user_for_key


def _token(scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key.strip() if scheme.lower() == "token" else ""
    return None


class TokenOrSessionAuth:
    def __init__(self, inner):
        self.inner = inner
        self.by_session = AllowedHostsOriginValidator(AuthMiddlewareStack(inner))
        self.denier = WebsocketDenier.as_asgi()

    async def __call__(self, scope, receive, send):
        key = _token(scope)
        if key is None:
            return await self.by_session(scope, receive, send)
        user = await database_sync_to_async(user_for_key)(key) if key else None
        if user is None:
            return await self.denier(scope, receive, send)
        return await self.inner({**scope, "user": user, "auth_token": True}, receive, send)
