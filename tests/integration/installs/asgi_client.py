"""Requests to the real ASGI application (config/asgi.py) in this process, as daphne would pass them:
the agent's progress reports take this path wherever they are tested (installs/ingest.py), never a
Django test client, which would miss the route that answers them."""

from __future__ import annotations

import asyncio
import json

from channels.testing import HttpCommunicator

from config.asgi import application

API = "/api/agent/v1/"
# The progress route in front of Django: its writers hold database connections, which a test closes
# (ROUTE.close()) before the test database is flushed.
ROUTE = application.application_mapping["http"]


async def asgi_post(
    path: str, body: bytes | str | dict, token: str | None, content_type: str = "application/json", app=None
) -> tuple[int, dict, dict]:
    """POST ``API + path``: (status, JSON answer, headers)."""
    data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    headers = [(b"content-type", content_type.encode())] if content_type else []
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    communicator = HttpCommunicator(app or application, "POST", API + path, body=data, headers=headers)
    response = await communicator.get_response()
    return response["status"], json.loads(response["body"] or b"{}"), dict(response["headers"])


def via_route(path, body, token, content_type="application/json", app=None) -> tuple[int, dict, dict]:
    """asgi_post from synchronous code, on an event loop of its own whose writer is closed after."""
    try:
        return asyncio.run(asgi_post(path, body, token, content_type, app))
    finally:
        (app or ROUTE).close()
