import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

IN_TFTPD = "/usr/sbin/in.tftpd"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TftpServer:
    """A real tftpd-hpa on loopback serving `root`, fetched with the real tftp-hpa client."""

    def __init__(self, root: Path, port: int, scratch: Path) -> None:
        self.root = root
        self.port = port
        self.scratch = scratch
        self._fetches = 0

    def get(self, name: str) -> tuple[bytes | None, str]:
        """Fetch `name` exactly as a PXE client asks for it: (content or None, client output)."""
        self._fetches += 1
        local = self.scratch / f"fetch-{self._fetches}"
        result = subprocess.run(
            ["tftp", "-m", "octet", "127.0.0.1", str(self.port), "-c", "get", name, str(local)],
            capture_output=True,
            text=True,
            timeout=20,
        )
        output = result.stdout + result.stderr
        # tftp-hpa reports a TFTP error on its output and may leave an empty local file behind.
        if result.returncode != 0 or "Error code" in output or not local.exists():
            return None, output
        return local.read_bytes(), output


@pytest.fixture
def tftp_server(tmp_path):
    if not (os.path.exists(IN_TFTPD) and shutil.which("tftp")):
        pytest.fail("tftpd-hpa and tftp-hpa are required (listed in .ci/apt-packages; make test installs them)")
    root = tmp_path / "tftproot"
    scratch = tmp_path / "client"
    root.mkdir()
    scratch.mkdir()
    port = _free_udp_port()
    # tftpd-hpa drops to `nobody` by default, which cannot enter pytest's private tmp directory; serve as the
    # user running the tests instead.
    user = pwd.getpwuid(os.getuid()).pw_name
    log = (tmp_path / "tftpd.log").open("w")
    server = subprocess.Popen(
        [
            IN_TFTPD,
            "--foreground",
            "--listen",
            "--address",
            f"127.0.0.1:{port}",
            "--user",
            user,
            "--secure",
            "--verbose",
            str(root),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    tftp = TftpServer(root, port, scratch)
    try:
        probe = root / ".probe"
        probe.write_text("up\n")
        deadline = time.monotonic() + 10
        while tftp.get(".probe")[0] != b"up\n":
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"in.tftpd did not come up: {(tmp_path / 'tftpd.log').read_text()}")
            time.sleep(0.05)
        probe.unlink()
        yield tftp
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
