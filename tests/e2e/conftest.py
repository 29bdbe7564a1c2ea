"""A real machine in a box for the end-to-end install: QEMU (KVM on hardware virtualization, else TCG) behind
OpenIPMI's ipmi_sim, PXE-booting from the site's TFTP root over QEMU's user-mode network, and the dashboard running
for real (daphne + RQ worker on PostgreSQL and Redis) as subprocesses.

The VM test is collected only with PROVISIONER_E2E=1 (`make e2e`): it needs root, QEMU and a built memory OS,
and takes minutes. test_builder.py (the builder's pure parts) runs in `make test` too.
The run's files (serial console, QEMU and BMC events, dashboard logs, timeline) stay in var/e2e/<lab>/ so a
failure can be read afterwards. PROVISIONER_E2E_DIR moves var/e2e, so two runs on one machine (each with its own
database and Redis database) keep apart: every port they listen on is a free one picked at start.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
E2E = os.environ.get("PROVISIONER_E2E") == "1"
collect_ignore_glob = [] if E2E else ["test_vm_*.py"]

RUN_DIR = Path(os.environ.get("PROVISIONER_E2E_DIR") or ROOT / "var" / "e2e")
CACHE_DIR = ROOT / "var" / "memory-os"
IPMI_USER = "admin"
IPMI_PASSWORD = "E2e-bmc-pw-5Rt"
SITE = "e2e"
# Where the guest finds the host: QEMU's user-mode network maps 10.0.2.2 to the host's 127.0.0.1.
GUEST_HOST = "10.0.2.2"
# ... and what the control plane sees as the source of the guest's requests.
PROVISIONING_NETWORKS = "127.0.0.0/8"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
TOOLS = ("qemu-system-x86_64", "qemu-img", "ipmi_sim", "debootstrap", "syslinux", "mcopy", "mkfs.vfat", "sfdisk")


@dataclass(frozen=True)
class LabSpec:
    """One VM of the run: its firmware, its disks (names; each a blank 512 MiB disk in a slot of its own) and the
    inventory it gets (MAC, host name and rack position differ between labs: they share the database).

    A machine not `in_inventory` has no row until a test accepts it from discovery (at `position_u`); its
    `extra_macs` are NICs on the same network that do not network-boot. `preload` fills its disks before the
    first power-on: "os", the e2e installed OS at their start (the discovery-off boot needs something to boot),
    "marks", DISK_MARKER at their start; both add DISK_MARKER in their middle and at their end (the erase check
    needs something to erase). Not the OS on a machine that will be deployed: a second disk holding a root
    labelled "root" would be found by the installed OS as readily as the deployed one."""

    name: str
    firmware: str
    mac: str
    position_u: int
    disks: tuple[str, ...] = ("a",)
    extra_macs: tuple[str, ...] = ()
    in_inventory: bool = True
    preload: str = ""

    @property
    def hostname(self) -> str:
        return f"e2e-{self.name}"


LABS = {
    "bios": LabSpec("bios", "bios", "52:54:00:e2:e0:01", 1),
    "uefi": LabSpec("uefi", "uefi", "52:54:00:e2:e0:02", 2),
    "raid1-bios": LabSpec("raid1-bios", "bios", "52:54:00:e2:e0:03", 3, disks=("a", "b")),
    "raid1-uefi": LabSpec("raid1-uefi", "uefi", "52:54:00:e2:e0:04", 4, disks=("a", "b")),
    # Unknown machines: two disks, two NICs, an installed OS already on their disks, not in inventory.
    "unknown-discovery": LabSpec(
        "unknown-discovery", "bios", "52:54:00:e2:e1:01", 5, disks=("a", "b"), extra_macs=("52:54:00:e2:e1:02",),
        in_inventory=False, preload="marks",
    ),
    "unknown-no-discovery": LabSpec(
        "unknown-no-discovery", "uefi", "52:54:00:e2:e1:11", 6, disks=("a", "b"), extra_macs=("52:54:00:e2:e1:12",),
        in_inventory=False, preload="os",
    ),
}  # fmt: skip


def kvm_usable() -> bool:
    """KVM backed by the CPU's own virtualization (vmx or svm among its flags) and a /dev/kvm that opens. A
    /dev/kvm without them (a paravirtual KVM such as PVM inside a cloud VM) runs SeaBIOS but stops with an
    "emulation failure" when iPXE switches modes."""
    try:
        flags = {word for line in open("/proc/cpuinfo") if line.startswith("flags") for word in line.split()}
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return bool(flags & {"vmx", "svm"})


# PROVISIONER_E2E_ACCEL=tcg forces software emulation on a machine whose KVM is there but misbehaves.
ACCEL = os.environ.get("PROVISIONER_E2E_ACCEL") or ("kvm" if kvm_usable() else "tcg")


def disk_serial(name: str) -> str:
    return f"E2E-DISK-{name.upper()}"


# What a preloaded disk carries in its middle and in its last MiB, so an erase that skips them shows.
DISK_MARKER = b"provisioner e2e: data that an erase must remove\n" * 64


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Timeline:
    """Phases with wall-clock and elapsed time, printed as they happen and kept in timeline.log."""

    def __init__(self, path: Path):
        self.path = path
        self.started = time.monotonic()
        self.seen: list[str] = []
        path.write_text("")

    def mark(self, phase: str, detail: str = "") -> None:
        line = f"{time.strftime('%H:%M:%S')} +{time.monotonic() - self.started:6.1f}s  {phase}" + (
            f": {detail}" if detail else ""
        )
        self.seen.append(phase)
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def _wait_port(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start on port {port} (see its log)") from None
            time.sleep(0.2)


def _udp_bound(port: int) -> bool:
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as table:
        return any(line.split()[1] == wanted for line in table.readlines()[1:])


@pytest.fixture(scope="session")
def _prerequisites():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run .ci/e2e-setup as root")
    if os.geteuid() != 0:
        pytest.fail("the end-to-end test builds the memory OS with debootstrap and needs root")
    # The run drops and re-creates its database: one named for end-to-end runs only (prove2e, or another
    # ending in e2e for a second run beside it).
    database = os.environ.get("DATABASE_URL", "")
    if not database.startswith("postgres") or not database.rstrip("/").rsplit("/", 1)[-1].endswith("e2e"):
        pytest.fail("run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/prove2e (see docs/memory-os.md)")


@pytest.fixture(scope="session")
def memory_os(_prerequisites):
    from provisioner.memory_os.build import build, summary

    result = build(CACHE_DIR)
    print(summary(result), flush=True)
    return result


@pytest.fixture(scope="session")
def database(_prerequisites, django_db_blocker):
    """The e2e database, dropped and migrated afresh; the test process reads it directly through the ORM."""
    import psycopg
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"] or None,
        dbname="postgres", autocommit=True,
    ) as admin:  # fmt: skip
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db["NAME"],),
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}"')
        admin.execute(f'CREATE DATABASE "{db["NAME"]}"')
    from tests import redis_claim

    redis_claim.flush()
    with django_db_blocker.unblock():
        call_command("migrate", verbosity=0)
        yield
        connections.close_all()


class Services:
    """daphne, the scheduler and the site's RQ worker as subprocesses, logging into the run directory."""

    def __init__(self, run: Path):
        self.run = run
        self.port = free_port()
        self.processes: list[subprocess.Popen] = []
        self.env = {
            **os.environ,
            "ALLOWED_HOSTS": f"127.0.0.1,localhost,{GUEST_HOST}",
            "PYTHONUNBUFFERED": "1",
        }

    def spawn(self, name: str, *argv: str) -> subprocess.Popen:
        log = (self.run / f"{name}.log").open("ab")
        process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.processes.append(process)
        return process

    def manage(self, *argv: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *argv], cwd=ROOT, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> Services:
        serve = (sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(self.port))  # as deployed
        daphne = self.spawn("daphne", *serve)
        _wait_port(self.port, daphne, "daphne")
        self.spawn("scheduler", sys.executable, "manage.py", "scheduler")
        self.spawn("worker", sys.executable, "manage.py", "worker", "--site", SITE)
        return self

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


class ImageServer:
    """The disk image over HTTP on 127.0.0.1 (the guest's 10.0.2.2), and the first-boot helper: the callback
    URL of the machine with the given MAC, for an installed OS that found none on its disk."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.callbacks: dict[str, str] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.directory), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                if self.path.startswith("/first-boot/"):
                    url = server.callbacks.get(self.path.rsplit("/", 1)[-1].lower())
                    if url is None:
                        self.send_error(404)
                        return
                    body = url.encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{GUEST_HOST}:{self.port}/{path.lstrip('/')}"

    def stop(self) -> None:
        self.httpd.shutdown()


class Machine:
    """The VM behind its BMC: ipmi_sim on a loopback UDP port whose chassis control starts and stops QEMU."""

    def __init__(
        self, run: Path, firmware: str, tftp_root: Path, mac: str, disks: tuple[str, ...] = ("a",),
        *, disk_size: str = "512M", memory_mib: int = 1024, extra_macs: tuple[str, ...] = (),
    ):  # fmt: skip
        self.run = run
        self.disk_size = disk_size
        self.firmware = firmware
        self.accel = ACCEL
        self.state = run / "bmc"
        self.state.mkdir()
        self.port = free_port(socket.SOCK_DGRAM)
        self.serial = run / "serial.log"
        self.serial.write_text("")
        self.disks = {name: run / f"disk-{name}.qcow2" for name in disks}
        for path in self.disks.values():
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), disk_size], check=True)
        config = {
            "firmware": firmware,
            "accel": ACCEL,
            "memory_mib": memory_mib,
            "mac": mac,
            "extra_macs": list(extra_macs),
            "tftp_root": str(tftp_root),
            "bootfile": "pxelinux.0" if firmware == "bios" else "grubx64.efi",
            "disks": [{"name": n, "file": str(path), "serial": disk_serial(n)} for n, path in self.disks.items()],
            "serial": str(self.serial),
            "monitor": str(self.state / "monitor.sock"),
            "pidfile": str(self.state / "qemu.pid"),
            "sercon": str(self.state / "sercon-port"),
            "ovmf_code": str(OVMF_CODE),
            "ovmf_vars": str(self.state / "OVMF_VARS.fd"),
        }
        (self.state / "sercon-port").write_bytes((0x3F8).to_bytes(2, "little"))
        if firmware == "uefi":
            shutil.copyfile(OVMF_VARS, self.state / "OVMF_VARS.fd")
        (self.state / "config.json").write_text(json.dumps(config, indent=2))
        (self.state / "boot").write_text("default\n")
        (self.state / "events.log").write_text("")
        wrapper = self.state / "chassis"
        program = Path(__file__).parent / "chassis.py"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {program} {self.state} "$@"\n')
        wrapper.chmod(0o755)
        (self.state / "lan.conf").write_text(
            textwrap.dedent(
                f"""\
                name "e2e{self.port}"
                set_working_mc 0x20
                  startlan 1
                    addr 127.0.0.1 {self.port}
                    priv_limit admin
                    allowed_auths_callback none md2 md5 straight
                    allowed_auths_user none md2 md5 straight
                    allowed_auths_operator none md2 md5 straight
                    allowed_auths_admin none md2 md5 straight
                    guid b123456789abcdefa123456789abcdef
                  endlan
                  chassis_control "{wrapper} 0x20"
                  user 2 true "{IPMI_USER}" "{IPMI_PASSWORD}" admin 10 none md2 md5 straight
                """
            )
        )
        (self.state / "sim.emu").write_text(
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n"
        )
        (self.state / "sim").mkdir()
        log = (self.state / "ipmi_sim.log").open("ab")
        self.sim = subprocess.Popen(
            ["ipmi_sim", "-c", "lan.conf", "-f", "sim.emu", "-n", "-s", "sim"],
            cwd=self.state, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _udp_bound(self.port):
            if self.sim.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ipmi_sim did not start")
            time.sleep(0.05)

    def attach(self, *names: str) -> None:
        """Plug in only these disks at the next power-on (all of them when none is named)."""
        unknown = set(names) - set(self.disks)
        if unknown:
            raise ValueError(f"no disk {sorted(unknown)} in this machine: it has {sorted(self.disks)}")
        path = self.state / "config.json"
        config = json.loads(path.read_text())
        config["attached"] = list(names) if names else None
        path.write_text(json.dumps(config, indent=2))

    def preload(self, image: Path | None) -> None:
        """Write the raw disk `image` (None: DISK_MARKER) at the start of every disk and DISK_MARKER in its middle
        and at its end (the machine is off: QEMU has no disk open)."""
        for path in self.disks.values():
            raw = path.with_suffix(".raw")
            size = self.disk_bytes()
            with raw.open("wb") as f:
                f.truncate(size)
                if image is not None:
                    with image.open("rb") as src:
                        shutil.copyfileobj(src, f, 1 << 20)
                for offset in self.probe_offsets()[0 if image is None else 1 :]:
                    f.seek(offset)
                    f.write(DISK_MARKER)
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
            raw.unlink()

    def disk_bytes(self) -> int:
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        return int(self.disk_size[:-1]) * units[self.disk_size[-1].upper()]

    def probe_offsets(self) -> tuple[int, int, int]:
        """Where a disk's start, middle and end regions (len(DISK_MARKER) bytes each) begin."""
        size = self.disk_bytes()
        return 0, size // 2, size - len(DISK_MARKER)

    def read_regions(self, name: str) -> dict[str, bytes]:
        """The start, middle and end regions of disk `name` as the guest would read them (QEMU must be off)."""
        with tempfile.TemporaryDirectory(dir=self.run) as tmp:
            raw = Path(tmp) / "disk.raw"
            subprocess.run(
                ["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", str(self.disks[name]), str(raw)], check=True
            )
            regions = {}
            with raw.open("rb") as f:
                for label, offset in zip(("start", "middle", "end"), self.probe_offsets(), strict=True):
                    f.seek(offset)
                    regions[label] = f.read(len(DISK_MARKER))
        return regions

    def bmc(self):
        from provisioner.bmc import BmcTarget, get_driver

        return get_driver("ipmi", BmcTarget("127.0.0.1", self.port, IPMI_USER, IPMI_PASSWORD, timeout_s=5))

    def qemu_pid(self) -> int | None:
        try:
            pid = int((self.state / "qemu.pid").read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None

    def stop(self) -> None:
        pid = self.qemu_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        if self.sim.poll() is None:
            self.sim.kill()
            self.sim.wait(timeout=5)


def prepare_tftp_root(tftp_root: Path, memory_os, firmware: str) -> None:
    from provisioner.memory_os.build import publish
    from provisioner.pxe import write_defaults

    tftp_root.mkdir(parents=True)
    for source in ("/usr/lib/PXELINUX/pxelinux.0", "/usr/lib/syslinux/modules/bios/ldlinux.c32"):
        shutil.copy(source, tftp_root)
    # Debian's signed network GRUB looks for its config in grub/ on the TFTP server it came from.
    shutil.copy("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", tftp_root / "grubx64.efi")
    write_defaults(tftp_root)
    publish(memory_os, tftp_root)


@pytest.fixture
def lab(request, database, memory_os, django_db_blocker):
    """Everything for one install of one VM: returns a dict of the pieces; tears all of it down afterwards.
    Parametrized indirectly with a key of LABS."""
    spec = LABS[request.param]
    firmware = spec.firmware
    run = RUN_DIR / spec.name
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    timeline = Timeline(run / "timeline.log")
    tftp_root = run / "tftp"
    prepare_tftp_root(tftp_root, memory_os, firmware)
    images = ImageServer(run / "www")
    (run / "www").mkdir()
    from tests.e2e.installed_os import build_disk

    image, sha256 = build_disk(run / "www", CACHE_DIR, images.url("first-boot"))
    timeline.mark("image built", f"{image.stat().st_size} bytes compressed, sha256 {sha256[:12]}")
    services = Services(run).start()
    hostname, mac = spec.hostname, spec.mac
    machine = Machine(run, firmware, tftp_root, mac, spec.disks, extra_macs=spec.extra_macs)
    if spec.preload:
        machine.preload(run / "www" / "build" / "disk.img" if spec.preload == "os" else None)
    with django_db_blocker.unblock():
        _inventory(spec, services.port, tftp_root, machine.port, images.url(image.name), sha256)
    timeline.mark(
        "dashboard up",
        f"daphne 127.0.0.1:{services.port}, worker for {SITE}, BMC udp {machine.port}, QEMU {ACCEL}, "
        f"{len(spec.disks)} disk(s), {1 + len(spec.extra_macs)} NIC(s)"
        + ("" if spec.in_inventory else ", not in inventory")
        + (f", disks preloaded ({spec.preload})" if spec.preload else ""),
    )
    try:
        yield {
            "run": run,
            "timeline": timeline,
            "tftp_root": tftp_root,
            "images": images,
            "services": services,
            "machine": machine,
            "firmware": firmware,
            "spec": spec,
            "hostname": hostname,
            "mac": mac,
            "blocker": django_db_blocker,
        }
    finally:
        machine.stop()
        services.stop()
        images.stop()


def _inventory(spec: LabSpec, port: int, tftp_root: Path, bmc_port: int, image_url: str, sha256: str) -> None:
    from inventory.models import BMC, NIC, Machine, MachineStatus, OSProfile, Rack, Site
    from inventory.stock import sync_stock_profiles
    from provisioner.memory_os.build import PROFILE

    sync_stock_profiles()
    OSProfile.objects.filter(name=PROFILE).update(image_url=image_url, image_sha256=sha256)
    # The guest reaches the control plane through QEMU's user-mode network, whose connections to 10.0.2.2 reach
    # daphne from 127.0.0.1: that is the address every agent request comes from. Discovery starts off; a test
    # that wants it switches it on.
    site, _ = Site.objects.update_or_create(
        slug=SITE,
        defaults={
            "name": "End to end",
            "tftp_root": str(tftp_root),
            "base_url": f"http://{GUEST_HOST}:{port}",
            "memory_os": OSProfile.objects.get(name=PROFILE),
            "provisioning_networks": PROVISIONING_NETWORKS,
            "discovery": False,
        },
    )
    rack, _ = Rack.objects.get_or_create(site=site, name="vm", defaults={"height_u": 42})
    if not spec.in_inventory:
        return
    machine = Machine.objects.create(
        hostname=spec.hostname, rack=rack, position_u=spec.position_u, height_u=1, status=MachineStatus.READY
    )
    NIC.objects.create(machine=machine, name="pxe", mac=spec.mac, is_pxe=True)
    bmc = BMC(machine=machine, driver="ipmi", address="127.0.0.1", port=bmc_port, username=IPMI_USER)
    bmc.set_password(IPMI_PASSWORD)
    bmc.save()
