"""Websockets through the real ASGI stack (origin check, session or token auth, routing), as a browser or a
script uses them: a communicator per socket, its bytes and JSON notices kept apart."""

from __future__ import annotations

import asyncio
import json

from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def communicator(path: str, cookie: str | None = None, *, token: str | None = None) -> WebsocketCommunicator:
    """A browser's socket (``cookie``: its session) or a script's (``token``: an API key, and no Origin)."""
    headers = [(b"host", b"127.0.0.1")]
    if token is not None:
        headers.append((b"authorization", f"Token {token}".encode()))
    else:
        headers.append((b"origin", b"http://127.0.0.1"))
    if cookie is not None:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


class Socket:
    """One browser's socket: bytes and JSON notices kept apart, read until what a test waits for."""

    def __init__(self, comm: WebsocketCommunicator):
        self.comm = comm
        self.output = b""
        self.notices: list[dict] = []

    async def pump(self, timeout: float = 5) -> None:
        message = await self.comm.receive_output(timeout)
        if message["type"] == "websocket.close":
            self.notices.append({"type": "closed", "code": message.get("code")})
        elif message.get("bytes") is not None:
            self.output += message["bytes"]
        else:
            self.notices.append(json.loads(message["text"]))

    async def until_output(self, needle: bytes, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.output:
                await self.pump(timeout)

    async def until_notice(self, **fields) -> dict:
        async with asyncio.timeout(10):
            while True:
                for notice in self.notices:
                    if all(notice.get(k) == v for k, v in fields.items()):
                        self.notices.remove(notice)
                        return notice
                await self.pump()


async def connect(path: str, cookie: str | None = None, *, token: str | None = None) -> Socket:
    comm = communicator(path, cookie, token=token)
    connected, code = await comm.connect(timeout=15)
    assert connected, code
    return Socket(comm)
