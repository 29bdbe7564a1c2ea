"""A stop of daphne (config.serve) is bounded even when a request will not end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tests.servers import ROOT, free_port


def test_a_request_that_ignores_its_cancellation_does_not_hold_the_stop(tmp_path):
    port = free_port()
    env = {**os.environ, "SERVE_STOP_GRACE_S": "2"}
    log = tmp_path / "daphne.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port), "tests.stubborn_app:application"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"200" in client.recv(1024)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.wait(timeout=30)
        took = time.monotonic() - started
        assert took < 15, took
        text = log.read_text()
        assert "did not stop within 2 s" in text and "stubborn_app.py" in text, text[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
