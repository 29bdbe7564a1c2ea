"""A TCP forwarder on loopback, for tests and benches that need a network between processes: it adds a
latency each way (a slow link between a site's worker and the centre), and it can be pointed at another
server while running, dropping the connections it carried (a virtual IP moved to a promoted replica).

Standard library only: one asyncio loop on a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

CHUNK = 65536


class TcpProxy:
    """Listens on 127.0.0.1:<port> and forwards each connection to ``target`` (host, port), delaying every
    chunk by ``delay_s`` in each direction while keeping its order (latency, not a narrow pipe)."""

    def __init__(self, target: tuple[str, int], *, delay_s: float = 0.0, port: int = 0):
        self.target = target
        self.delay_s = delay_s
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self._port = port
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, name="tcp-proxy", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> TcpProxy:
        self._thread.start()
        self.server = self._call(asyncio.start_server(self._serve, "127.0.0.1", self._port, reuse_address=True))
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self.server is None:
            return
        self._call(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
        self.server = None

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def retarget(self, target: tuple[str, int]) -> None:
        """Send new connections to ``target`` and end the ones open now, as a virtual IP that moved does:
        their clients see the connection close and connect again."""
        self.target = target
        self._call(self._drop_all())

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _shutdown(self) -> None:
        self.server.close()
        await self._drop_all()

    async def _drop_all(self) -> None:
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    async def _serve(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self.connections += 1
        for w in (client_writer, server_writer):
            w.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.writers.add(w)
        await asyncio.gather(
            self._pipe(client_reader, server_writer, client_writer),
            self._pipe(server_reader, client_writer, server_writer),
        )

    async def _pipe(self, reader, writer, other) -> None:
        """Copy one direction; chunks are read at once and written ``delay_s`` after they arrived."""
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver():
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((time.monotonic() + self.delay_s, data))
        except OSError:
            pass
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(OSError, ConnectionError):
                await sender
            for w in (writer, other):
                w.close()
                self.writers.discard(w)
