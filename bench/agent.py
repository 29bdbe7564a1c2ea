"""write_image throughput: raw, gzip, xz and zstd images streamed from a local HTTP server into a sandbox disk file,
and a qcow2 image downloaded, verified and converted.

    .venv/bin/python bench/agent.py [--size-mib 256] [--rounds 3]

Shows what on-the-fly decompression and hashing cost next to a plain copy, so a slow install can be blamed on
the network, the disk or the codec. The image is half noise and half zeros, roughly what a filesystem image
with free space looks like to a compressor. Figures are the median MiB/s of the decompressed stream over rounds
(for qcow2, of the raw disk it holds, download and conversion together). zstd and qcow2 need the zstd and
qemu-img binaries.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import lzma
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provisioner.agent.context import Context  # noqa: E402
from provisioner.agent.host import SandboxHost  # noqa: E402
from provisioner.agent.tasks import run_task  # noqa: E402

MIB = 1024 * 1024


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _image(size: int) -> bytes:
    rng = random.Random(size)
    block = 64 * 1024
    return b"".join(rng.randbytes(block) + bytes(block) for _ in range(size // (2 * block)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    raw = _image(args.size_mib * MIB)
    sha = hashlib.sha256(raw).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp) / "files"
        files.mkdir()
        (files / "image.raw").write_bytes(raw)
        (files / "image.gz").write_bytes(gzip.compress(raw, 6))
        (files / "image.xz").write_bytes(lzma.compress(raw, preset=6))
        (files / "image.zst").write_bytes(subprocess.run(["zstd", "-3", "-c"], input=raw, capture_output=True,
                                                         check=True).stdout)  # fmt: skip
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(files / "image.raw"),
                        str(files / "image.qcow2")], check=True, capture_output=True)  # fmt: skip
        # A qcow2 image is verified as the file downloaded, the others as the raw stream.
        shas = {"image.qcow2": hashlib.sha256((files / "image.qcow2").read_bytes()).hexdigest()}
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(files)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        host = SandboxHost(Path(tmp) / "sandbox")
        with open(host.disks / "sda.img", "wb") as f:
            f.truncate(len(raw) + MIB)
        print(f"{'image':<12}{'size MiB':>10}{'MiB/s':>10}{'worst':>10}")
        for name in ("image.raw", "image.gz", "image.xz", "image.zst", "image.qcow2"):
            rates = []
            for _ in range(args.rounds):
                began = time.perf_counter()
                params = {"url": f"{base}/{name}", "sha256": shas.get(name, sha), "disk": "/dev/sda"}
                result = run_task(Context(host), "write_image", params)
                if not result.ok:
                    print(f"{name}: {result.reason}: {result.message}", file=sys.stderr)
                    return 1
                rates.append(len(raw) / MIB / (time.perf_counter() - began))
            size = (files / name).stat().st_size / MIB
            print(f"{name:<12}{size:>10.0f}{statistics.median(rates):>10.0f}{min(rates):>10.0f}")
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
