"""write_image against a real HTTP server on 127.0.0.1: raw, gzip, xz, zstd (the real zstd binary) and qcow2 (the
real qemu-img); resume with Range, restart without it; checksum mismatch; a disk too small."""

import gzip
import hashlib
import lzma
import random
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from provisioner.agent.tasks import image as image_task
from provisioner.agent.tasks import run_task
from tests.unit.agent.conftest import MIB, make_disk

DISK = 8 * MIB


@pytest.fixture(autouse=True)
def _fast_retries(ctx):
    ctx.retry_base_s = 0.01


def _raw(size=3 * MIB + 12345):
    rng = random.Random(size)
    # Half noise, half zeros: compressible enough to make the compressed and raw offsets differ.
    return b"".join(rng.randbytes(4096) + bytes(4096) for _ in range(size // 8192)) + rng.randbytes(size % 8192)


def _qcow2(raw, *options):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "raw").write_bytes(raw)
        argv = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", *options, f"{tmp}/raw", f"{tmp}/qcow2"]
        subprocess.run(argv, check=True, capture_output=True)
        return (Path(tmp) / "qcow2").read_bytes()


RAW = _raw()
SHA = hashlib.sha256(RAW).hexdigest()
ENCODED = {
    "none": RAW,
    "gz": gzip.compress(RAW, 1),
    "xz": lzma.compress(RAW, preset=1),
    # Two frames, as `zstd -T0` or a concatenation of parts makes.
    "zstd": b"".join(
        subprocess.run(["zstd", "-1", "-c"], input=part, capture_output=True, check=True).stdout
        for part in (RAW[: MIB + 1], RAW[MIB + 1 :])
    ),
    "qcow2": _qcow2(RAW),
}
# A qcow2 image is verified as downloaded: its raw form only exists on the disk.
SHAS = {kind: SHA for kind in ENCODED} | {"qcow2": hashlib.sha256(ENCODED["qcow2"]).hexdigest()}
# The names the control plane's workflows use for the same formats.
CONTRACT_NAMES = {"none": "raw", "gz": "gzip", "xz": "xz", "zstd": "zstd", "qcow2": "qcow2"}


def _serve(images, kind, name=None):
    name = name or f"/image.{kind}"
    images.files[name] = ENCODED[kind]
    return images.url + name


def _disk(sandbox, size=DISK):
    return make_disk(sandbox, "sda", size, fill=b"old-os" * 1000)


def _written(path, n=None):
    with open(path, "rb") as f:
        return f.read(len(RAW) if n is None else n)


@pytest.mark.parametrize("kind", ["none", "gz", "xz", "zstd", "qcow2"])
@pytest.mark.parametrize("declared", ["auto", "explicit", "contract"])
def test_streams_decompresses_writes_and_verifies(sandbox, ctx, images, kind, declared):
    disk = _disk(sandbox)
    compression = {"auto": "auto", "explicit": kind, "contract": CONTRACT_NAMES[kind]}[declared]
    params = {"url": _serve(images, kind), "sha256": SHAS[kind], "disk": "/dev/sda", "compression": compression}
    result = run_task(ctx, "write_image", params)
    assert result.ok, result
    assert _written(disk) == RAW
    assert SHAS[kind] in result.output
    assert ctx.channel.percents == sorted(ctx.channel.percents) and ctx.channel.percents[-1] == 100
    assert (sandbox.root / "target-disk").read_text() == "/dev/sda"
    # Nothing is left behind: no spooled qcow2 file.
    assert list(sandbox.scratch_dir().iterdir()) == []


def test_qcow2_is_converted_with_progress_past_the_download(sandbox, ctx, images):
    disk = _disk(sandbox)
    params = {"url": _serve(images, "qcow2"), "sha256": SHAS["qcow2"], "disk": "/dev/sda"}
    result = run_task(ctx, "write_image", params)
    assert result.ok, result
    # The download is the first half of the task, qemu-img's conversion the second.
    assert any(50 <= p < 100 for p in ctx.channel.percents)
    assert "of the qcow2 image" in result.output
    # The qcow2 holds whole sectors: its raw form is RAW padded with zeros to the next 512 bytes.
    padded = -(-len(RAW) // 512) * 512
    assert _written(disk, padded) == RAW + bytes(padded - len(RAW))
    assert f"wrote {padded} bytes" in result.output


@pytest.mark.parametrize("kind", ["none", "xz", "zstd", "qcow2"])
def test_dropped_connection_resumes_with_range(sandbox, ctx, images, kind):
    disk = _disk(sandbox)
    cut = len(ENCODED[kind]) // 2 + 7
    images.cuts = [cut]
    result = run_task(ctx, "write_image", {"url": _serve(images, kind), "sha256": SHAS[kind], "disk": "/dev/sda"})
    assert result.ok, result
    assert _written(disk) == RAW
    assert [r["range"] for r in images.requests] == [None, f"bytes={cut}-"]
    # The validator from the first answer guards the resume against a file that changed meanwhile.
    assert images.requests[1]["if_range"] == images.etag
    assert any(f"resumed at byte {cut}" in line for line in ctx.channel.lines)


@pytest.mark.parametrize("kind", ["gz", "zstd", "qcow2"])
def test_without_range_support_the_stream_restarts(sandbox, ctx, images, kind):
    disk = _disk(sandbox)
    images.ranges = False
    images.cuts = [len(ENCODED[kind]) // 2 + 3]
    result = run_task(ctx, "write_image", {"url": _serve(images, kind), "sha256": SHAS[kind], "disk": "/dev/sda"})
    assert result.ok, result
    assert _written(disk) == RAW
    assert len(images.requests) == 2
    assert any("rewriting from the start" in line for line in ctx.channel.lines)
    assert ctx.channel.percents == sorted(ctx.channel.percents)


def test_changed_file_during_resume_restarts(sandbox, ctx, images):
    disk = _disk(sandbox)
    images.cuts = [MIB]
    images.etag_after_cut = '"v2"'  # the resume carries If-Range "v1", which no longer matches
    result = run_task(ctx, "write_image", {"url": _serve(images, "none"), "sha256": SHA, "disk": "/dev/sda"})
    assert result.ok, result
    assert _written(disk) == RAW
    assert images.requests[1]["if_range"] == '"v1"'
    assert any("rewriting from the start" in line for line in ctx.channel.lines)


def test_resume_at_the_wrong_offset_starts_over(sandbox, ctx, images):
    disk = _disk(sandbox)
    images.cuts = [MIB + 5]
    images.wrong_range = True
    result = run_task(ctx, "write_image", {"url": _serve(images, "xz"), "sha256": SHA, "disk": "/dev/sda"})
    assert result.ok, result
    assert _written(disk) == RAW
    assert [r["range"] for r in images.requests] == [None, f"bytes={MIB + 5}-", None]


def test_checksum_mismatch_fails_and_spoils_the_disk(sandbox, ctx, images):
    disk = _disk(sandbox)
    result = run_task(ctx, "write_image", {"url": _serve(images, "xz"), "sha256": "0" * 64, "disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "ImageChecksumMismatch")
    assert SHA in result.message
    # A wrong image must not boot: its first MiB is gone.
    assert _written(disk, MIB) == bytes(MIB)


def test_corrupt_compressed_stream_is_a_checksum_mismatch(sandbox, ctx, images):
    _disk(sandbox)
    for kind in ("xz", "zstd"):
        broken = bytearray(ENCODED[kind])
        broken[len(broken) // 2] ^= 0xFF
        images.files[f"/broken.{kind}"] = bytes(broken)
    for kind in ("gz", "zstd"):
        images.files[f"/short.{kind}"] = ENCODED[kind][: len(ENCODED[kind]) // 2]
    for name in ("/broken.xz", "/short.gz", "/broken.zstd", "/short.zstd"):
        result = run_task(ctx, "write_image", {"url": images.url + name, "sha256": SHA, "disk": "/dev/sda"})
        assert (result.ok, result.reason) == (False, "ImageChecksumMismatch"), name
    assert "zstd exited with status" in result.message


def test_zstd_stops_when_the_disk_is_full(sandbox, ctx, images):
    make_disk(sandbox, "sda", 2 * MIB)
    result = run_task(ctx, "write_image", {"url": _serve(images, "zstd"), "sha256": SHA, "disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "ImageTooLarge")
    assert (sandbox.disks / "sda.img").stat().st_size == 2 * MIB


def test_qcow2_checksum_mismatch_leaves_the_disk_untouched(sandbox, ctx, images):
    disk = _disk(sandbox)
    result = run_task(ctx, "write_image", {"url": _serve(images, "qcow2"), "sha256": "0" * 64, "disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "ImageChecksumMismatch")
    assert SHAS["qcow2"] in result.message and "was not written" in result.message
    assert _written(disk, 6) == b"old-os"
    assert list(sandbox.scratch_dir().iterdir()) == []


def test_qcow2_that_does_not_fit_the_memory_os_is_refused(sandbox, ctx, images, monkeypatch):
    disk = _disk(sandbox)
    free = image_task._free_space(sandbox.scratch_dir()) + image_task.SCRATCH_RESERVE
    monkeypatch.setattr(image_task, "SCRATCH_RESERVE", free - len(ENCODED["qcow2"]) // 2)
    result = run_task(ctx, "write_image", {"url": _serve(images, "qcow2"), "sha256": SHAS["qcow2"], "disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "ImageTooLarge")
    assert f"qcow2 image ({image_task.human(len(ENCODED['qcow2']))}) does not fit" in result.message
    assert "zstd" in result.message  # says what to do instead
    assert _written(disk, 6) == b"old-os"
    assert list(sandbox.scratch_dir().iterdir()) == []


def test_qcow2_larger_than_the_disk_or_with_a_backing_file_is_refused(sandbox, ctx, images, tmp_path):
    disk = make_disk(sandbox, "sda", 2 * MIB, fill=b"old-os")
    result = run_task(ctx, "write_image", {"url": _serve(images, "qcow2"), "sha256": SHAS["qcow2"], "disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "ImageTooLarge")
    assert "larger than the disk" in result.message
    assert _written(disk, 6) == b"old-os"
    disk = _disk(sandbox)
    # An overlay would have qemu-img read its backing file from the memory OS.
    base = tmp_path / "base.qcow2"
    base.write_bytes(ENCODED["qcow2"])
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)], check=True,
                   capture_output=True)  # fmt: skip
    images.files["/overlay.qcow2"] = overlay.read_bytes()
    sha = hashlib.sha256(images.files["/overlay.qcow2"]).hexdigest()
    result = run_task(ctx, "write_image", {"url": images.url + "/overlay.qcow2", "sha256": sha, "disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "ImageConversionFailed")
    assert str(base) in result.message
    assert _written(disk, 6) == b"old-os"


def test_missing_image_fails_at_once(sandbox, ctx, images):
    _disk(sandbox)
    result = run_task(ctx, "write_image", {"url": images.url + "/nope.xz", "sha256": SHA, "disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "ImageDownloadFailed")
    assert "404" in result.message
    assert result.retryable is False  # asking again later finds the same nothing
    assert len(images.requests) == 1


def test_a_server_that_never_delivers_fails_once_stalled_too_long(sandbox, ctx, images, monkeypatch):
    monkeypatch.setattr(image_task, "STALL_LIMIT_S", 0.3)
    _disk(sandbox)
    images.cuts = [0] * 100
    began = time.monotonic()
    result = run_task(ctx, "write_image", {"url": _serve(images, "none"), "sha256": SHA, "disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "ImageDownloadFailed")
    assert "no data for" in result.message
    assert result.retryable is True  # the network, not the image: a later attempt may well get through
    assert 3 <= len(images.requests) < 100
    assert time.monotonic() - began < 3


def test_progress_restarts_the_stall_clock(sandbox, ctx, images, monkeypatch):
    monkeypatch.setattr(image_task, "STALL_LIMIT_S", 0.5)
    disk = _disk(sandbox)
    # Each attempt brings a little and then breaks, for longer in total than the stall limit.
    images.cuts = [64 * 1024] * 12
    ctx.retry_base_s = 0.05
    result = run_task(ctx, "write_image", {"url": _serve(images, "none"), "sha256": SHA, "disk": "/dev/sda"})
    assert result.ok, result
    assert _written(disk) == RAW
    assert len(images.requests) == 13


def test_unreachable_server_fails_with_download_failed(sandbox, ctx, free_port, monkeypatch):
    monkeypatch.setattr(image_task, "STALL_LIMIT_S", 0.3)
    _disk(sandbox)
    url = f"http://127.0.0.1:{free_port}/image.xz"
    result = run_task(ctx, "write_image", {"url": url, "sha256": SHA, "disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "ImageDownloadFailed")


def test_image_larger_than_the_disk(sandbox, ctx, images):
    make_disk(sandbox, "sda", 2 * MIB)
    result = run_task(ctx, "write_image", {"url": _serve(images, "gz"), "sha256": SHA, "disk": "/dev/sda"})
    assert (result.ok, result.reason) == (False, "ImageTooLarge")
    assert (sandbox.disks / "sda.img").stat().st_size == 2 * MIB


def test_missing_disk_and_bad_params(sandbox, ctx, images):
    result = run_task(ctx, "write_image", {"url": _serve(images, "none"), "sha256": SHA, "disk": "/dev/sdx"})
    assert result.reason == "DiskNotFound"
    _disk(sandbox)
    for params, field in [
        ({"url": "ftp://x/y", "sha256": SHA, "disk": "/dev/sda"}, "url"),
        ({"url": images.url + "/image.none", "sha256": "abc", "disk": "/dev/sda"}, "sha256"),
        ({"url": images.url + "/image.none", "sha256": SHA, "disk": "/dev/sda", "compression": "zip"}, "compression"),
    ]:
        result = run_task(ctx, "write_image", params)
        assert (result.reason, result.message.split(":")[0]) == ("InvalidParams", field)
    assert images.requests == []


def test_an_image_that_cannot_fit_is_refused_before_any_disk_is_wiped(sandbox, ctx, images):
    disk = make_disk(sandbox, "sda", 2 * MIB, fill=b"old-os")
    other = make_disk(sandbox, "sdb", 8 * MIB, fill=b"data")
    result = run_task(ctx, "wipe_disks", {"disks": ["/dev/sda", "/dev/sdb"], "image_url": _serve(images, "none")})
    assert (result.ok, result.reason) == (False, "ImageTooLarge")
    assert result.message == (
        f"the image (3.0 MiB, {images.url}/image.none) is larger than /dev/sda (2.0 MiB); no disk was wiped"
    )
    assert _written(disk, 6) == b"old-os" and _written(other, 4) == b"data"
    assert images.requests == []  # asked with HEAD, nothing downloaded


def test_the_size_check_before_wiping_lets_a_fitting_or_unannounced_image_through(sandbox, ctx, images):
    disk = _disk(sandbox)
    url = _serve(images, "gz")
    assert run_task(ctx, "wipe_disks", {"disks": ["/dev/sda"], "image_url": url}).ok
    assert images.heads == ["/image.gz"] and _written(disk, 6) == bytes(6)
    small = make_disk(sandbox, "sdb", 2 * MIB, fill=b"old-os")
    images.head = False  # a server that does not answer HEAD refuses nothing: write_image checks as it writes
    assert run_task(ctx, "wipe_disks", {"disks": ["/dev/sdb"], "image_url": _serve(images, "none")}).ok
    assert _written(small, 6) == bytes(6)


def test_too_large_says_both_sizes_in_human_units(sandbox, ctx, images):
    make_disk(sandbox, "sda", 2 * MIB)
    result = run_task(ctx, "write_image", {"url": _serve(images, "none"), "sha256": SHA, "disk": "/dev/sda"})
    assert result.message == "the image (3.0 MiB) is larger than the disk (2.0 MiB)"
    result = run_task(ctx, "write_image", {"url": _serve(images, "gz"), "sha256": SHA, "disk": "/dev/sda"})
    packed = image_task.human(len(ENCODED["gz"]))
    assert result.message == (
        f"the image is larger than the disk (2.0 MiB): more than 2.0 MiB once decompressed from a {packed} file"
    )
