"""Real BMC peers for the driver tests: OpenIPMI's ipmi_sim, the in-process loopback BMC, sushy-tools'
Redfish emulator and the machine's Redis. Plain helpers and fixtures; no mocks of any protocol."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from provisioner.bmc import BmcTarget
from provisioner.lab.bmc import LoopbackBmc
from tests import redis_claim

IPMI_USER = "admin"
# Distinctive, so a leak into logs or messages is easy to spot.
IPMI_PASSWORD = "Sim-pw-7Qx!"
ROOT = Path(__file__).resolve().parents[3]


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port nothing listens on right now (UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _udp_bound(port: int) -> bool:
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as table:
        return any(line.split()[1] == wanted for line in table.readlines()[1:])


# ipmi_sim asks this script for power and boot state and tells it about changes; keeping them in files is
# what makes the simulator's chassis real (and lets tests read what the BMC was told, not what it echoes).
CHASSIS_SCRIPT = textwrap.dedent(
    """\
    #!/bin/sh
    dir=$(dirname "$0")
    shift  # the MC address
    op=$1; shift
    if [ "$op" = get ]; then
        for parm in "$@"; do
            case $parm in
                power) echo "power:$(cat "$dir/power")" ;;
                boot) echo "boot:$(cat "$dir/boot")" ;;
            esac
        done
    else
        while [ $# -gt 1 ]; do
            echo "$2" > "$dir/$1"
            echo "$1=$2" >> "$dir/events"
            shift 2
        done
    fi
    """
)


class SerialPort:
    """The machine's serial port behind ipmi_sim's SOL: a TCP server the simulator connects to
    (``sol "tcp:127.0.0.1:PORT"`` in lan.conf). What SOL delivers is kept in ``received``; ``send`` plays the
    machine writing to its port; with ``echo`` it sends back every byte it receives, as a shell would."""

    def __init__(self, echo: bool = False):
        self.echo = echo
        self.received = bytearray()
        self.changed = threading.Condition()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="serial-port", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.changed:
                self.conn = conn
                self.changed.notify_all()
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    break
                with self.changed:
                    self.received += data
                    self.changed.notify_all()
                if self.echo:
                    conn.sendall(data)
            conn.close()

    def wait_connected(self, timeout: float = 10) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.conn is not None, timeout), "ipmi_sim never connected"

    def wait_for(self, needle: bytes, timeout: float = 10) -> bytes:
        with self.changed:
            found = self.changed.wait_for(lambda: needle in self.received, timeout)
            assert found, f"{needle!r} never reached the serial port; it got {bytes(self.received)!r}"
            return bytes(self.received)

    def send(self, data: bytes) -> None:
        self.wait_connected()
        self.conn.sendall(data)

    def close(self) -> None:
        self.server.close()
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
            self.conn.close()


def full_sensor_sdr(
    number: int, name: str, sensor_type: int, unit: int, *, m: int = 1, r_exp: int = 0, entity: int = 0x07
) -> str:
    """An ipmi_sim ``main_sdr_add`` line: a full sensor record (IPMI 2.0 table 43-1) for a threshold sensor of
    the BMC (0x20, LUN 0), unsigned readings, value = m * raw * 10^r_exp, thresholds readable and settable."""
    name_bytes = name.encode()
    body = [
        0x20, 0x00, number, entity, 0x01,  # owner, LUN, number, entity id and instance
        0x7F, 0x68,  # initialisation; capabilities: thresholds readable and settable (bits 3:2 = 10b)
        sensor_type, 0x01,  # sensor type; event/reading type: threshold
        0x95, 0x7A, 0x95, 0x7A,  # assertion/lower and deassertion/upper masks: LNC, LC, UNC, UC
        0x1B, 0x1B,  # readable and settable thresholds: LNC, LC, UNC, UC
        0x00, unit, 0x00,  # units: unsigned, no rate or modifier; base unit; modifier unit
        0x00,  # linear
        m & 0xFF, (m >> 8 & 0x03) << 6, 0x00, 0x00, 0x00,  # M, tolerance, B, accuracy, direction
        (r_exp & 0x0F) << 4,  # R (result) exponent, B exponent 0
        0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00,  # flags, nominal, normal max/min, sensor max/min
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  # thresholds (ipmi_sim keeps its own: sensor_set_threshold)
        0x00, 0x00, 0x00, 0x00, 0x00,  # hysteresis, reserved, OEM
        0xC0 | len(name_bytes), *name_bytes,  # 8-bit ASCII id string
    ]  # fmt: skip
    record = [number, 0x00, 0x51, 0x01, len(body), *body]
    return f"main_sdr_add 0x20 {' '.join(f'0x{b:02x}' for b in record)}"


class IpmiSim:
    """One ipmi_sim process on 127.0.0.1 with an RMCP+ admin user and a file-backed chassis.

    ``emu`` is added to the simulator's command file (ipmi_sim_cmd(5)): sensors, their SDRs and the event log
    for the tests that need them (see test_ipmi_health.py). With a ``serial`` port, serial-over-LAN to it."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        password: str = IPMI_PASSWORD,
        emu: str = "",
        serial: SerialPort | None = None,
    ):
        self.dir = workdir
        self.port = port or free_port()
        self.password = password
        self.serial = serial
        sol = f'  sol "tcp:127.0.0.1:{serial.port}" 115200\n' if serial is not None else ""
        self.process: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "state").mkdir(exist_ok=True)
        script = workdir / "chassis.sh"
        script.write_text(CHASSIS_SCRIPT)
        script.chmod(0o755)
        (workdir / "power").write_text("0\n")
        (workdir / "boot").write_text("default\n")
        (workdir / "events").write_text("")
        (workdir / "lan.conf").write_text(
            textwrap.dedent(
                f"""\
                name "sim{self.port}"
                set_working_mc 0x20
                  startlan 1
                    addr 127.0.0.1 {self.port}
                    priv_limit admin
                    allowed_auths_callback none md2 md5 straight
                    allowed_auths_user none md2 md5 straight
                    allowed_auths_operator none md2 md5 straight
                    allowed_auths_admin none md2 md5 straight
                    guid a123456789abcdefa123456789abcdef
                  endlan
                  chassis_control "{script} 0x20"
                  user 2 true "{IPMI_USER}" "{password}" admin 10 none md2 md5 straight
                """
            )
            + sol
        )
        (workdir / "sim.emu").write_text(
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
            + (emu.rstrip("\n") + "\n" if emu else "")
            + "mc_enable 0x20\n"
        )

    def start(self) -> IpmiSim:
        self.process = subprocess.Popen(
            ["ipmi_sim", "-c", "lan.conf", "-f", "sim.emu", "-n", "-s", "state"],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not _udp_bound(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ipmi_sim did not start on port {self.port}")
            time.sleep(0.005)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def target(self, timeout_s: float = 2.0, password: str | None = None) -> BmcTarget:
        return BmcTarget("127.0.0.1", self.port, IPMI_USER, password or self.password, timeout_s=timeout_s)

    @property
    def power(self) -> str:
        """What the simulator's chassis holds: "1" (on) or "0" (off)."""
        return (self.dir / "power").read_text().strip()

    @property
    def boot(self) -> str:
        """The boot device the simulator passed to its chassis: "pxe", "default" or "none"."""
        return (self.dir / "boot").read_text().strip()

    @property
    def events(self) -> list[str]:
        return (self.dir / "events").read_text().split()

    def set_power(self, on: bool) -> None:
        (self.dir / "power").write_text("1\n" if on else "0\n")


def ipmitool(port: int, *args: str, password: str = IPMI_PASSWORD, timeout: float = 15) -> str:
    """Run ``ipmitool -I lanplus -C 3`` (cipher suite 3; discovery against ipmi_sim costs ~10 s a call)."""
    result = subprocess.run(
        ["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(port), "-U", IPMI_USER, "-E", *args],
        env={**os.environ, "IPMI_PASSWORD": password},  # -E: keep the password off the process list
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session", autouse=True)
def _simulators_installed():
    for tool in ("ipmi_sim", "ipmitool"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install the Debian packages in .ci/apt-packages")


@pytest.fixture
def ipmi_sim_factory(tmp_path):
    sims: list[IpmiSim] = []

    def start(**kwargs) -> IpmiSim:
        sim = IpmiSim(tmp_path / f"sim{len(sims)}", **kwargs).start()
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.kill()


@pytest.fixture
def ipmi_sim(ipmi_sim_factory) -> IpmiSim:
    return ipmi_sim_factory()


@pytest.fixture
def sol_sim(ipmi_sim_factory) -> IpmiSim:
    """ipmi_sim with serial-over-LAN to an echoing serial port (``sol_sim.serial``), already connected."""
    serial = SerialPort(echo=True)
    sim = ipmi_sim_factory(serial=serial)
    serial.wait_connected()
    yield sim
    serial.close()


@pytest.fixture
def loopback_bmc():
    bmcs: list[LoopbackBmc] = []

    def start(**kwargs) -> LoopbackBmc:
        kwargs.setdefault("username", IPMI_USER)
        kwargs.setdefault("password", IPMI_PASSWORD)
        bmc = LoopbackBmc(**kwargs).start()
        bmcs.append(bmc)
        return bmc

    yield start
    for bmc in bmcs:
        bmc.stop()


# -- Redfish ----------------------------------------------------------------------------------------------------

REDFISH_USER = "redfish"
REDFISH_PASSWORD = "Rf-pw-3Kz?"

# sushy-tools' fake driver applies a power change 1-11 s after the request, at random (it imitates slow
# hardware). Pin it to the minimum so a change lands within a second and the tests stay fast.
#
# Its Storage, Drives and Volumes come from the config file, but a volume exists only once the systems driver's
# find_or_create_storage_volume says so, and only the libvirt driver has one (it makes a libvirt volume); the
# fake driver answers 501 to every POST to Volumes, and even a GET of a configured volume. So the fake systems
# get a backend here: a volume gets a unique id (the emulator's own is the pid and the second, which two volumes
# made within one second share) and, left without a size, its RAID level's capacity over its drives, as a
# controller computes it. The emulator keeps only a volume's Name, VolumeType and CapacityBytes, so each POST
# body is also written to a journal: what the BMC was told, for the tests to read.
_EMULATOR = (
    "import itertools, json, os, sys\n"
    "import flask\n"
    "from sushy_tools.emulator.resources.systems import fakedriver\n"
    "class _Fastest:\n"
    "    @staticmethod\n"
    "    def randint(low, high):\n"
    "        return low\n"
    "fakedriver.random = _Fastest\n"
    "_ids = itertools.count(1)\n"
    "def _capacity(body):\n"
    "    sizes = [DRIVE_BYTES for _ in (body.get('Links') or {}).get('Drives') or ()]\n"
    "    level = body.get('RAIDType')\n"
    "    if not sizes: return 0\n"
    "    if level == 'RAID0': return sum(sizes)\n"
    "    if level == 'RAID1': return min(sizes)\n"
    "    if level == 'RAID5': return (len(sizes) - 1) * min(sizes)\n"
    "    return len(sizes) // 2 * min(sizes)\n"
    "def _volume(self, data):\n"
    "    if flask.request.method == 'POST':\n"
    "        body = flask.request.get_json()\n"
    "        data['Id'] = 'Volume%d' % next(_ids)\n"
    "        if data.get('CapacityBytes') is None: data['CapacityBytes'] = _capacity(body)\n"
    "        with open(os.environ['EMULATOR_JOURNAL'], 'a') as journal:\n"
    "            journal.write(json.dumps({'path': flask.request.path, 'body': body}) + '\\n')\n"
    "    return data['Id']\n"
    "DRIVE_BYTES = int(os.environ['EMULATOR_DRIVE_BYTES'])\n"
    "fakedriver.FakeDriver.find_or_create_storage_volume = _volume\n"
    "from sushy_tools.emulator import main as _main\n"
    # The emulator keeps BootSourceOverrideEnabled at Continuous whatever it is sent: what the BMC was asked
    # is read from this journal of every change request instead.
    "@_main.app.before_request\n"
    "def _journal_changes():\n"
    "    if flask.request.method in ('PATCH', 'POST'):\n"
    "        with open(os.environ['EMULATOR_REQUESTS'], 'a') as journal:\n"
    "            body = flask.request.get_json(silent=True)\n"
    "            journal.write(json.dumps({'method': flask.request.method, 'path': flask.request.path,\n"
    "                                      'body': body}) + '\\n')\n"
    "sys.exit(_main.main())\n"
)

# sushy-tools serves Thermal (temperatures and fans) but no system event log. Redfish BMCs serve the SEL as a
# LogService of the system or of its manager; this adds one to the emulator's app, as iDRAC and OpenBMC shape it:
# a LogServices link on the system, a "SEL" service with Entries and the ClearLog action. Its entries live in a
# JSON file the tests write (EMULATOR_SEL), and ClearLog empties that file, so a test reads what the BMC holds.
_EMULATOR_LOG_SERVICE = (
    "import json, os\n"
    "import flask\n"
    "from sushy_tools.emulator import main as _main\n"
    "_SEL = os.environ['EMULATOR_SEL']\n"
    "_BASE = '/redfish/v1/Systems/<identity>/LogServices'\n"
    "@_main.app.route(_BASE, methods=['GET'])\n"
    "def _log_services(identity):\n"
    "    base = '/redfish/v1/Systems/%s/LogServices' % identity\n"
    "    return flask.jsonify({'@odata.id': base, 'Members': [{'@odata.id': base + '/SEL'}],\n"
    "                          'Members@odata.count': 1})\n"
    "@_main.app.route(_BASE + '/SEL', methods=['GET'])\n"
    "def _sel_service(identity):\n"
    "    base = '/redfish/v1/Systems/%s/LogServices/SEL' % identity\n"
    "    return flask.jsonify({'@odata.id': base, 'Id': 'SEL', 'Name': 'System Event Log', 'LogEntryType': 'SEL',\n"
    "        'Entries': {'@odata.id': base + '/Entries'},\n"
    "        'Actions': {'#LogService.ClearLog': {'target': base + '/Actions/LogService.ClearLog'}}})\n"
    "@_main.app.route(_BASE + '/SEL/Entries', methods=['GET'])\n"
    "def _sel_entries(identity):\n"
    "    with open(_SEL) as f: entries = json.load(f)\n"
    "    return flask.jsonify({'@odata.id': flask.request.path, 'Members': entries,\n"
    "                          'Members@odata.count': len(entries)})\n"
    "@_main.app.route(_BASE + '/SEL/Actions/LogService.ClearLog', methods=['POST'])\n"
    "def _sel_clear(identity):\n"
    "    with open(_SEL, 'w') as f: json.dump([], f)\n"
    "    return '', 204\n"
    "@_main.app.after_request\n"
    "def _link_log_services(response):\n"
    "    parts = flask.request.path.rstrip('/').split('/')\n"
    "    if flask.request.method == 'GET' and len(parts) == 5 and parts[3] == 'Systems' and response.is_json:\n"
    "        body = response.get_json()\n"
    "        body['LogServices'] = {'@odata.id': flask.request.path.rstrip('/') + '/LogServices'}\n"
    "        response.set_data(json.dumps(body))\n"
    "    return response\n"
)

FAKE_SYSTEM = "27946b59-9e44-4fa7-8e91-f3527a1ef094"  # sushy-tools' default fake system
DRIVE_BYTES = 899_527_000_000
# Two storage subsystems: "RAID.Integrated.1-1" (the PERC-like one, four drives) and "AHCI.1" (two drives).
STORAGE = {
    "RAID.Integrated.1-1": ["Disk.Bay.0", "Disk.Bay.1", "Disk.Bay.2", "Disk.Bay.3"],
    "AHCI.1": ["Disk.Direct.0", "Disk.Direct.1"],
}


def _storage_config() -> str:
    storage = {
        FAKE_SYSTEM: [
            {
                "Id": sid,
                "Name": f"{sid} storage",
                "StorageControllers": [{"MemberId": "0", "Name": f"{sid} controller", "SpeedGbps": 12}],
                "Drives": drives,
            }
            for sid, drives in STORAGE.items()
        ]
    }
    drives = {
        (FAKE_SYSTEM, sid): [{"Id": d, "Name": d, "CapacityBytes": DRIVE_BYTES, "Protocol": "SAS"} for d in ids]
        for sid, ids in STORAGE.items()
    }
    volumes = {(FAKE_SYSTEM, sid): [] for sid in STORAGE}
    return (
        f"SUSHY_EMULATOR_STORAGE = {storage!r}\n"
        f"SUSHY_EMULATOR_DRIVES = {drives!r}\n"
        f"SUSHY_EMULATOR_VOLUMES = {volumes!r}\n"
    )


class RedfishEmulator:
    def __init__(self, workdir: Path):
        import bcrypt

        self.port = free_port(socket.SOCK_STREAM)
        self.journal = workdir / "volumes.jsonl"
        self.journal.write_text("")
        self.requests_journal = workdir / "requests.jsonl"
        self.requests_journal.write_text("")
        self.sel = workdir / "sel.json"
        self.sel.write_text("[]")
        digest = bcrypt.hashpw(REDFISH_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        (workdir / "htpasswd").write_text(f"{REDFISH_USER}:{digest}\n")
        # Its own state directory: the default is one under /tmp that every emulator on the machine shares.
        (workdir / "emulator.conf").write_text(
            f"SUSHY_EMULATOR_AUTH_FILE = {str(workdir / 'htpasswd')!r}\n"
            f"SUSHY_EMULATOR_STATE_DIR = {str(workdir / 'state')!r}\n" + _storage_config()
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", _EMULATOR_LOG_SERVICE + _EMULATOR, "--fake", "-i", "127.0.0.1", "-p", str(self.port),
             "--config", str(workdir / "emulator.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "EMULATOR_JOURNAL": str(self.journal), "EMULATOR_DRIVE_BYTES": str(DRIVE_BYTES),
                 "EMULATOR_REQUESTS": str(self.requests_journal), "EMULATOR_SEL": str(self.sel)},
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("sushy-emulator did not start") from None
                time.sleep(0.02)

    def target(self, timeout_s: float = 3.0, password: str = REDFISH_PASSWORD) -> BmcTarget:
        return BmcTarget("127.0.0.1", self.port, REDFISH_USER, password, timeout_s=timeout_s)

    def posted_volumes(self) -> list[dict]:
        """Every POST to a Volumes collection so far, in order: ``{"path": ..., "body": ...}``."""
        return [json.loads(line) for line in self.journal.read_text().splitlines()]

    def changes(self) -> list[dict]:
        """Every PATCH and POST the emulator received, in order: ``{"method", "path", "body"}``."""
        return [json.loads(line) for line in self.requests_journal.read_text().splitlines()]

    def set_sel(self, entries: list[dict]) -> None:
        """What the emulator's SEL holds: Redfish LogEntry objects."""
        self.sel.write_text(json.dumps(entries))

    @property
    def sel_entries(self) -> list[dict]:
        return json.loads(self.sel.read_text())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def redfish_emulator(tmp_path_factory):
    emulator = RedfishEmulator(tmp_path_factory.mktemp("redfish"))
    yield emulator
    emulator.stop()


# -- Redis ------------------------------------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    """The session's claimed database (tests/redis_claim.py): only this session empties it, and only between
    tests, so a guard lock lives as long as the test that took it."""
    from django.conf import settings

    redis_claim.session_claim()
    return settings.REDIS_URL


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client):
    """A key prefix of this test's own, removed afterwards."""
    prefix = f"test:{uuid.uuid4().hex}:provisioner:bmc:"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)
