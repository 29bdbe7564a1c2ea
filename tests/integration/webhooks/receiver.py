"""A real HTTP receiver on loopback for webhook tests, and the verification recipe of the README."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300) -> bool:
    """The README's recipe: split the header, recompute the HMAC over "<t>.<body>", compare in constant time."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) <= tolerance_s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """Records every POST (headers, body); answers ``status`` after ``delay_s``."""

    def __init__(self, port: int = 0, *, status: int = 200, delay_s: float = 0.0):
        self.status, self.delay_s, self.received = status, delay_s, []
        self.answer = b"ok " * 2000
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay_s)
                receiver.received.append((dict(self.headers), body))
                answer = receiver.answer
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def delivery_ids(self) -> list[str]:
        return [headers["X-Provisioner-Delivery"] for headers, _ in self.received]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
