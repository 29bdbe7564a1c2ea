"""Plain factories for the agent tests: a sandbox host with disk image files, a task context that records what
the task reported, and the two local HTTP servers."""

from __future__ import annotations

import socket

import pytest

from provisioner.agent.context import Context, ProgressChannel
from provisioner.agent.host import SandboxHost
from tests.unit.agent import servers

MIB = 1024 * 1024


class RecordingChannel(ProgressChannel):
    """Keeps every update, so a test can check progress was monotonic and logged lines arrived."""

    def __init__(self):
        super().__init__()
        self.percents: list[int] = []
        self.lines: list[str] = []

    def update(self, percent=None, message=None):
        super().update(percent, message)
        self.percents.append(self._percent)

    def log(self, line):
        super().log(line)
        self.lines.append(line)


def make_disk(host: SandboxHost, name: str, size: int = 64 * MIB, fill: bytes = b"") -> str:
    path = host.disks / f"{name}.img"
    with open(path, "wb") as f:
        f.truncate(size)
        if fill:
            f.write(fill)
    return str(path)


@pytest.fixture
def sandbox(tmp_path) -> SandboxHost:
    return SandboxHost(tmp_path / "sandbox")


@pytest.fixture
def ctx(sandbox) -> Context:
    return Context(sandbox, RecordingChannel())


@pytest.fixture
def images():
    state = servers.ImageFiles()
    server, url = servers.image_server(state)
    state.url = url
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
