"""Browsers' websockets.

A LiveSocket does what static/js/app.js does: connect with ``?after=<last id>``, keep the largest event id
it has rendered, and after a close reconnect in 1 s, doubling up to 10 s. It remembers every event id it
received (and how often) and every close of an open socket, with its code and time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass

from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 10.0


@dataclass(frozen=True)
class Close:
    at: float  # time.monotonic()
    code: int | None
    reason: str
    clean: bool


class _Protocol(WebSocketClientProtocol):
    def onOpen(self):  # noqa: N802 (autobahn's names)
        self.factory.socket._opened(self)

    def onMessage(self, payload, isBinary):  # noqa: N802, N803
        if not isBinary:
            self.factory.socket._message(payload)

    def onClose(self, wasClean, code, reason):  # noqa: N802, N803
        self.factory.socket._closed(self, wasClean, code, reason or "")


class LiveSocket:
    def __init__(self, name: str, port: int, path: str, session_key: str, after: int = 0):
        self.name = name
        self.port = port
        self.path = path
        self.session_key = session_key
        self.start_after = after  # what the socket is owed: every stored event of its stream above this id
        self.last_id = after
        self.received: Counter[int] = Counter()
        self.closes: list[Close] = []
        self.connects = 0
        self.failed_connects = 0
        self.resyncs = 0
        self.stopping = False
        self._protocol: _Protocol | None = None
        self._ended: asyncio.Future | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> LiveSocket:
        self.task = asyncio.create_task(self._run(), name=f"ws-{self.name}")
        return self

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        retry = RETRY_FIRST_S
        while not self.stopping:
            url = f"ws://127.0.0.1:{self.port}{self.path}?after={self.last_id}"
            factory = WebSocketClientFactory(
                url, origin=f"http://127.0.0.1:{self.port}", headers={"Cookie": f"sessionid={self.session_key}"}
            )
            factory.protocol = _Protocol
            factory.socket = self
            self._ended = loop.create_future()
            self._open = False
            try:
                await loop.create_connection(factory, "127.0.0.1", self.port)
                opened = await self._ended
            except OSError:
                opened = False
            if opened:
                retry = RETRY_FIRST_S
            else:
                self.failed_connects += 1
            if self.stopping:
                break
            await asyncio.sleep(retry)
            retry = min(retry * 2, RETRY_MAX_S)

    def _opened(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        self._open = True
        self.connects += 1

    def _message(self, payload: bytes) -> None:
        data = json.loads(payload)
        events = list(data.get("events", []))
        if "event" in data:
            events.append(data["event"])
        for event in events:
            self.received[event["id"]] += 1
            self.last_id = max(self.last_id, event["id"])
        if data.get("resync"):
            self.resyncs += 1

    def _closed(self, protocol: _Protocol, clean: bool, code: int | None, reason: str) -> None:
        if self._open and not self.stopping:
            self.closes.append(Close(time.monotonic(), code, reason, clean))
        self._protocol = None
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(self._open)

    async def stop(self) -> None:
        self.stopping = True
        if self._protocol is not None:
            self._protocol.sendClose(code=1000)
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, timeout=5)
            except TimeoutError:
                self.task.cancel()
