"""A simulated datacentre: N lab machines in racks, the demo image on HTTP, and an inventory file that tells the
control plane what is there (format: docs/lab.md). Machines marked ``unknown`` are racked and cabled but not in
that inventory: they power on once the site's TFTP root discovers (its default boots the memory OS in discovery
mode), and register themselves.

    python -m provisioner.lab --preset demo --state-dir var/lab --bmc-base-port 16230

Everything listens on 127.0.0.1. The inventory is written last, atomically, and removed at stop: its presence
means the lab is up. SIGTERM or SIGINT stops every machine (agents are killed, as by a power cut) and every
BMC; nothing is left running.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from provisioner import pxe
from provisioner.agent.build import build
from provisioner.lab.bastion import MACHINE_PREFIX, LabAccess
from provisioner.lab.bmc import LoopbackBmc
from provisioner.lab.firmware import Firmware
from provisioner.lab.image import DemoImage, FileServer, build_demo_image
from provisioner.lab.machine import DEFAULT_DISK_BYTES, SMALL_DISK_BYTES, LabMachine
from provisioner.lab.pdu import LoopbackPdu
from provisioner.pxe.bootconfig import DISCOVERY_NOTE, GRUB_DEFAULT, PXELINUX_DEFAULT
from provisioner.pxe.mac import normalise_mac
from provisioner.pxe.stock import stock_profiles

log = logging.getLogger(__name__)

INVENTORY_VERSION = 1
RACK_HEIGHT_U = 42
# The provisioning network of the lab: everything listens on loopback.
PROVISIONING_NETWORKS = "127.0.0.0/8"
# Unknown machines wait this long for the site to discover before they give up powering on; then between two.
DISCOVERY_WAIT_S = 600.0
UNKNOWN_POWER_ON_GAP_S = 1.0

FAULTS = {
    "bmc_rejects_credentials": "every BMC login fails as with a wrong password",
    "bmc_drops_packets": "the BMC ignores every packet: commands time out",
    "bmc_flaky": "the BMC ignores one packet in five: retries get through",
    "bmc_slow": "the BMC answers after 1.5 s",
    "bmc_dead": "nothing listens on the BMC's port",
    "never_boots": "powers on but never reaches its PXE ROM: no TFTP read, no agent, no installer",
    "disk_too_small": "a 1 MiB disk: the agent's write_image fails (ImageTooLarge), installers fail their disk check",
    "installer_silent": "an installer fetches its answers and calls its early hooks, then hangs: never finishes",
}


@dataclass
class MachineConfig:
    hostname: str
    rack: str
    position_u: int
    macs: list[str]
    firmware: str = Firmware.BIOS.value
    bmc_username: str = "admin"
    bmc_password: str = ""  # empty: derived from the lab's secret seed, stable across runs
    bmc_port: int = 0  # 0: the lab's base port + index, or any free port without a base
    faults: list[str] = field(default_factory=list)
    height_u: int = 1
    depth: str = "full"  # or "front" / "rear": a half-depth machine on that face (the site overview draws the rear)
    # Not in the inventory file: it powers on when the site discovers, and discovery finds it.
    unknown: bool = False

    def __post_init__(self):
        self.macs = [normalise_mac(m) for m in self.macs]
        self.firmware = Firmware(self.firmware).value
        unknown = sorted(set(self.faults) - set(FAULTS))
        if unknown:
            raise ValueError(f"{self.hostname}: unknown fault(s) {unknown}; known: {sorted(FAULTS)}")


@dataclass
class LabConfig:
    machines: list[MachineConfig]
    state_dir: Path
    tftp_root: Path | None = None  # default: <state_dir>/tftp
    inventory_path: Path | None = None  # default: <state_dir>/inventory.json
    base_url: str = ""  # the control plane as machines reach it; only copied into the inventory
    site: str = "lab"
    bmc_base_port: int = 0
    image_port: int = 0
    jump_port: int = 0  # the jump host's port on 127.0.0.1; 0: any free port
    ssh_port: int = 0  # every machine's sshd port, on its own address; 0: a free port
    install_s: float = 10.0  # how long a simulated installer takes between its first and last callback
    agent_args: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.state_dir = Path(self.state_dir).resolve()
        self.tftp_root = Path(self.tftp_root).resolve() if self.tftp_root else self.state_dir / "tftp"
        self.inventory_path = Path(self.inventory_path) if self.inventory_path else self.state_dir / "inventory.json"
        names = [m.hostname for m in self.machines]
        if len(set(names)) != len(names):
            raise ValueError("hostnames must be unique")
        macs = [mac for m in self.machines for mac in m.macs]
        if len(set(macs)) != len(macs):
            raise ValueError("MACs must be unique")

    @classmethod
    def from_dict(cls, data: dict, **overrides) -> LabConfig:
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
        data["machines"] = [m if isinstance(m, MachineConfig) else MachineConfig(**m) for m in data["machines"]]
        return cls(**data)


def demo_machines(racks: int = 3, per_rack: int = 12) -> list[MachineConfig]:
    """The demo: racks r1..rN of 1U machines, BIOS and UEFI alternating, two with deliberate faults."""
    machines = []
    for r in range(1, racks + 1):
        for i in range(1, per_rack + 1):
            machines.append(
                MachineConfig(
                    hostname=f"lab-r{r}-{i:02d}",
                    rack=f"r{r}",
                    position_u=2 * i - 1,  # a free U between machines, as in a rack with airflow gaps
                    macs=[f"52:54:00:{r:02x}:{i:02x}:01", f"52:54:00:{r:02x}:{i:02x}:02"],
                    firmware="uefi" if i % 2 == 0 else "bios",
                )
            )
    faults = {"lab-r1-12": ["bmc_rejects_credentials"], "lab-r2-12": ["disk_too_small"]}
    depths = {"lab-r2-10": "front", "lab-r2-11": "rear"}  # half-depth boxes: r2 is drawn from the rear as well
    for machine in machines:
        machine.faults = faults.get(machine.hostname, [])
        machine.depth = depths.get(machine.hostname, "full")
    return machines


def unknown_machines(count: int = 3, rack: str = "r3", first_u: int = 30) -> list[MachineConfig]:
    """Machines just delivered: racked and cabled (two NICs, two disks), their BMCs on the site's default
    credentials, but not in inventory. They power on once the site discovers, and show up in Discovered."""
    return [
        MachineConfig(
            hostname=f"lab-new-{i:02d}",
            rack=rack,
            position_u=first_u + 2 * (i - 1),
            macs=[f"52:54:00:fe:{i:02x}:01", f"52:54:00:fe:{i:02x}:02"],
            firmware="uefi" if i % 2 == 0 else "bios",
            unknown=True,
        )
        for i in range(1, count + 1)
    ]


PRESETS = {
    "demo": lambda: demo_machines(3, 12) + unknown_machines(3),
    "small": lambda: demo_machines(1, 4),
}


def _atomic_write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Lab:
    def __init__(self, config: LabConfig):
        self.config = config
        self.machines: dict[str, LabMachine] = {}
        self.image: DemoImage | None = None
        self.files: FileServer | None = None
        self.pdus: dict[str, LoopbackPdu] = {}  # one switched PDU per rack, by name
        self.outlets: dict[str, tuple[str, int]] = {}  # hostname -> (PDU name, outlet)
        self.started_at = 0.0
        self._stopping = threading.Event()
        self._discovery_waiter: threading.Thread | None = None
        self.access = LabAccess(
            config.state_dir / "ssh", [(m.hostname, m.rack) for m in config.machines if not m.unknown],
            jump_port=config.jump_port, ssh_port=config.ssh_port,
        )  # fmt: skip

    # -- secrets ----------------------------------------------------------------------------------------------

    def _seed(self) -> bytes:
        path = self.config.state_dir / "lab-seed"
        if not path.exists():
            _atomic_write(path, secrets.token_hex(32), 0o600)
        return path.read_text().strip().encode()

    def bmc_password(self, spec: MachineConfig, seed: bytes) -> str:
        if spec.bmc_password:
            return spec.bmc_password
        # A new machine's BMC has the vendor's default credentials, which the site's defaults name.
        name = "site-default" if spec.unknown else spec.hostname
        # Stable across runs, so a control plane that stored the credentials keeps working after a restart.
        return "lab-" + hmac.new(seed, name.encode(), hashlib.sha256).hexdigest()[:16]

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> Lab:
        config = self.config
        self.started_at = time.monotonic()
        config.inventory_path.unlink(missing_ok=True)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        pxe.write_defaults(config.tftp_root)
        self._stock_boot_files()
        seed = self._seed()
        try:
            self.image = build_demo_image(config.state_dir / "images")
            self.files = FileServer(config.state_dir / "images", port=config.image_port).start()
            agent = self._build_agent()
            for index, spec in enumerate(config.machines):
                self.machines[spec.hostname] = self._machine(spec, index, seed, agent)
            for machine in self.machines.values():
                machine.start()
            self._start_pdus(seed)
            self.access.start()
            for spec in config.machines:
                if "bmc_dead" in spec.faults:
                    self.machines[spec.hostname].bmc.die()
            self._passwords = {spec.hostname: self.bmc_password(spec, seed) for spec in config.machines}
            _atomic_write(config.inventory_path, json.dumps(self.inventory(), indent=2) + "\n", 0o600)
        except BaseException:
            self.stop()
            raise
        if any(spec.unknown for spec in config.machines):
            self._discovery_waiter = threading.Thread(
                target=self._power_on_unknown, name="lab-discovery-waiter", daemon=True
            )
            self._discovery_waiter.start()
        return self

    def discovering(self) -> bool:
        """Whether the TFTP root's defaults boot an unknown machine into discovery (both loaders')."""
        try:
            return all(
                DISCOVERY_NOTE in (self.config.tftp_root / name).read_text()
                for name in (PXELINUX_DEFAULT, GRUB_DEFAULT)
            )
        except OSError:
            return False

    def _power_on_unknown(self) -> None:
        """Once the site discovers, power the unknown machines on one after another, as the technician who racked
        them would: with nothing on their disks they network-boot, get the discovering default and register."""
        deadline = time.monotonic() + DISCOVERY_WAIT_S
        while not self.discovering():
            if time.monotonic() > deadline:
                log.warning("the site never switched discovery on; the unknown machines stay off")
                return
            if self._stopping.wait(0.5):
                return
        for spec in self.config.machines:
            if spec.unknown and not self._stopping.is_set():
                self.machines[spec.hostname].bmc.mains(True)
                self._stopping.wait(UNKNOWN_POWER_ON_GAP_S)

    def _start_pdus(self, seed: bytes) -> None:
        """A switched PDU per rack feeding each machine from an outlet: cutting it cuts the machine's mains."""
        by_rack: dict[str, list[MachineConfig]] = {}
        for spec in self.config.machines:
            by_rack.setdefault(spec.rack, []).append(spec)
        for rack, specs in sorted(by_rack.items()):
            name = f"{rack}-pdu"
            community = "lab-" + hmac.new(seed, name.encode(), hashlib.sha256).hexdigest()[:16]
            pdu = LoopbackPdu(community, outlets=max(24, len(specs))).start()
            bmcs = {}
            for outlet, spec in enumerate(specs, start=1):
                self.outlets[spec.hostname] = (name, outlet)
                bmcs[outlet] = self.machines[spec.hostname].bmc
            pdu.on_switch.append(
                lambda outlet, powered, bmcs=bmcs: bmcs[outlet].mains(powered) if outlet in bmcs else None
            )
            self.pdus[name] = pdu

    def _stock_boot_files(self) -> None:
        """Stand-ins for the kernels and initrds a site's PXE server carries for the stock profiles, so that a
        machine's log names only the files a profile asks for and the site lacks."""
        for profile in stock_profiles():
            for name in (profile["kernel"], profile["initrd"]):
                path = self.config.tftp_root / str(name).lstrip("/")
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(f"provisioner lab stand-in for {name}\n")

    def _build_agent(self) -> list[str]:
        # The memory OS ships the agent as this zipapp; the lab runs the same file.
        path = build(self.config.state_dir / "provisioner-agent.pyz")
        return [sys.executable, str(path)]

    def _machine(self, spec: MachineConfig, index: int, seed: bytes, agent: list[str]) -> LabMachine:
        port = spec.bmc_port or (self.config.bmc_base_port + index if self.config.bmc_base_port else 0)
        try:
            bmc = LoopbackBmc(spec.bmc_username, self.bmc_password(spec, seed), port=port)
        except OSError as exc:
            raise RuntimeError(f"{spec.hostname}: cannot bind its BMC to 127.0.0.1:{port}: {exc.strerror}") from None
        bmc.reject_credentials = "bmc_rejects_credentials" in spec.faults
        bmc.drop_packets = 1.0 if "bmc_drops_packets" in spec.faults else 0.2 if "bmc_flaky" in spec.faults else 0.0
        bmc.latency_s = 1.5 if "bmc_slow" in spec.faults else 0.0
        serial = f"LAB-{index + 1:04d}"
        new = {}
        if spec.unknown:  # two disks with serials of their own, and the BMC's address its memory OS reads
            new = {
                "extra_disks": ("sdb",),
                "disk_facts": {
                    "sda": {"serial": f"{serial}-SSD", "model": "Lab SSD 480G", "rotational": False},
                    "sdb": {"serial": f"{serial}-HDD", "model": "Lab HDD 4T", "rotational": True},
                },
                "bmc_facts": {"address": bmc.address, "port": bmc.port},
            }
        return LabMachine(
            spec.hostname,
            spec.macs,
            self.config.state_dir / "machines" / spec.hostname,
            self.config.tftp_root,
            firmware=spec.firmware,
            bmc=bmc,
            disk_bytes=SMALL_DISK_BYTES if "disk_too_small" in spec.faults else DEFAULT_DISK_BYTES,
            never_boots="never_boots" in spec.faults,
            installer_silent="installer_silent" in spec.faults,
            install_s=self.config.install_s,
            agent_argv=agent,
            agent_args=self.config.agent_args,
            dmi={"vendor": "Provisioner Lab", "product": "Simulated Server", "serial": serial},
            # The rack's leaf switch answers LLDP on the first NIC's port; just-delivered machines are cabled to a
            # switch that does not speak it yet, so commissioning shows the neighbour absent.
            switch="" if spec.unknown else f"leaf-{spec.rack}",
            switch_port=spec.position_u or 0,
            ssh_address=self.access.addresses.get(spec.hostname, ""),
            ssh_port=self.access.ssh_port,
            ip_prefix=MACHINE_PREFIX,
            **new,
        )

    def stop(self) -> None:
        """Stop every machine (a power cut for whatever runs on it), every BMC and the file server."""
        self._stopping.set()
        if self._discovery_waiter is not None:
            self._discovery_waiter.join(timeout=10)
        threads = [threading.Thread(target=m.stop, daemon=True) for m in self.machines.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        if self.files is not None:
            self.files.stop()
            self.files = None
        for pdu in self.pdus.values():
            pdu.stop()
        self.pdus = {}
        self.access.stop()
        self.config.inventory_path.unlink(missing_ok=True)

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- what the control plane reads -------------------------------------------------------------------------

    def inventory(self) -> dict:
        config = self.config
        racks = sorted({spec.rack for spec in config.machines})
        machines = []
        for index, spec in enumerate(config.machines):
            if spec.unknown:
                continue
            machine = self.machines[spec.hostname]
            machines.append(
                {
                    "hostname": spec.hostname,
                    "rack": spec.rack,
                    "position_u": spec.position_u,
                    "height_u": spec.height_u,
                    "depth": spec.depth,
                    "firmware": spec.firmware,
                    "serial": f"LAB-{index + 1:04d}",
                    "vendor": "Provisioner Lab",
                    "model": "Simulated Server",
                    "mac": machine.pxe_mac,
                    "nics": [
                        {"name": f"eno{i + 1}", "mac": mac, "pxe": mac == machine.pxe_mac}
                        | ({"ip": machine.ssh_address, "prefix": MACHINE_PREFIX} if mac == machine.pxe_mac else {})
                        for i, mac in enumerate(machine.macs)
                    ],
                    "bmc": {
                        "driver": "ipmi",
                        "address": machine.bmc.address,
                        "port": machine.bmc.port,
                        "username": spec.bmc_username,
                        "password": self._passwords[spec.hostname],
                    },
                    "faults": list(spec.faults),
                    "workdir": str(machine.workdir),
                    "pdu_outlets": [dict(zip(("pdu", "outlet"), self.outlets[spec.hostname], strict=True))]
                    if spec.hostname in self.outlets
                    else [],
                }
            )
        image = self.image
        site = {
            "slug": config.site,
            "name": f"Simulated datacentre ({config.site})",
            "tftp_root": str(config.tftp_root),
            "base_url": config.base_url,
        }
        unknown = [spec for spec in config.machines if spec.unknown]
        if unknown:
            # The site discovers them; their BMCs log in with the site's defaults (what a delivery's BMCs have).
            site.update(
                discovery=True,
                provisioning_networks=PROVISIONING_NETWORKS,
                bmc_username=unknown[0].bmc_username,
                bmc_password=self._passwords[unknown[0].hostname],
            )
        return {
            "version": INVENTORY_VERSION,
            "site": site,
            # For people and tests only: the control plane learns of these by discovery, never from this file.
            "unknown_machines": [self._unknown(spec) for spec in unknown],
            "image": {
                "url": f"{self.files.url}/{image.path.name}",
                "sha256": image.sha256,
                "size_bytes": image.size_bytes,
                "compression": "gz",
            },
            "racks": [{"name": name, "height_u": RACK_HEIGHT_U} for name in racks],
            "pdus": [
                {
                    "name": name,
                    "rack": name.removesuffix("-pdu"),
                    "address": pdu.address,
                    "port": pdu.port,
                    "profile": "apc",
                    "outlet_count": len(pdu.powered),
                    "community": pdu.community,
                }
                for name, pdu in self.pdus.items()
            ],
            "machines": machines,
            **self.access.inventory(),
        }

    def _unknown(self, spec: MachineConfig) -> dict:
        machine = self.machines[spec.hostname]
        return {
            "name": spec.hostname,
            "rack": spec.rack,
            "position_u": spec.position_u,
            "macs": machine.macs,
            "bmc": {"address": machine.bmc.address, "port": machine.bmc.port},
        }


# -- command line -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m provisioner.lab",
        description="Run a simulated datacentre on 127.0.0.1 until SIGTERM or Ctrl-C.",
        epilog="Faults a machine can have: " + "; ".join(f"{k}: {v}" for k, v in FAULTS.items()),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="machines to run (default demo)")
    source.add_argument("--config", type=Path, help="JSON file: {'machines': [...], ...} (see docs/lab.md)")
    parser.add_argument("--state-dir", type=Path, default=Path("var/lab"), help="machines' disks, logs, images")
    parser.add_argument("--tftp-root", type=Path, help="the site's TFTP root (default STATE_DIR/tftp)")
    parser.add_argument("--inventory", type=Path, help="inventory file (default STATE_DIR/inventory.json)")
    parser.add_argument("--base-url", help="the control plane's URL as machines reach it (copied to the inventory)")
    parser.add_argument("--site", help="site slug in the inventory (default lab)")
    parser.add_argument("--bmc-base-port", type=int, help="BMC of machine i listens on BASE+i (default: any port)")
    parser.add_argument("--image-port", type=int, help="port of the image server (default: any port)")
    parser.add_argument("--jump-port", type=int, help="TCP port of the jump host on 127.0.0.1 (default: any)")
    parser.add_argument("--ssh-port", type=int, help="TCP port of every machine's sshd (default: any free one)")
    parser.add_argument("--install-s", type=float, help="seconds a simulated installer takes (default 10)")
    parser.add_argument("--fresh", action="store_true", help="forget every machine's disk first")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def say(message: str) -> None:
    print(f"[lab] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {
        "state_dir": args.state_dir,
        "tftp_root": args.tftp_root,
        "inventory_path": args.inventory,
        "base_url": args.base_url,
        "site": args.site,
        "bmc_base_port": args.bmc_base_port,
        "image_port": args.image_port,
        "jump_port": args.jump_port,
        "ssh_port": args.ssh_port,
        "install_s": args.install_s,
    }
    try:
        if args.config is not None:
            config = LabConfig.from_dict(json.loads(args.config.read_text()), **overrides)
        else:
            config = LabConfig.from_dict({"machines": PRESETS[args.preset]()}, **overrides)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(f"lab: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.fresh:
        shutil.rmtree(config.state_dir / "machines", ignore_errors=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    lab = Lab(config)
    try:
        lab.start()
    except RuntimeError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    inventory = lab.inventory()
    ports = sorted(m["bmc"]["port"] for m in inventory["machines"] + inventory["unknown_machines"])
    racks = len(inventory["racks"])
    say(f"{len(lab.machines)} machines in {racks} racks; BMCs on 127.0.0.1 ports {ports[0]}-{ports[-1]}")
    faulty = [f"{m['hostname']} ({', '.join(m['faults'])})" for m in inventory["machines"] if m["faults"]]
    if faulty:
        say(f"deliberate faults: {'; '.join(faulty)}")
    if inventory["unknown_machines"]:
        names = ", ".join(m["name"] for m in inventory["unknown_machines"])
        say(f"not in inventory: {names}; they power on once the site discovers (see Discovered)")
    say(f"image {inventory['image']['url']} sha256={inventory['image']['sha256']} (of the decompressed image)")
    jump = inventory.get("jump_host")
    if jump:
        say(
            f"jump host {jump['username']}@127.0.0.1:{jump['port']}; installed machines' sshd on 127.77.<rack>.<n>:"
            f"{lab.access.ssh_port}"
        )
    else:
        say("no SSH: this host has only 127.0.0.1 on loopback, so machines get no addresses of their own")
    say(f"TFTP root {config.tftp_root}")
    say(f"machine logs {config.state_dir / 'machines'}/<hostname>/lab.log")
    say(f"inventory {config.inventory_path}")
    say(f"ready in {time.monotonic() - lab.started_at:.1f} s; Ctrl-C stops everything")
    try:
        stop.wait()
    finally:
        say("stopping")
        lab.stop()
        say("stopped")
    return 0


def config_as_dict(config: LabConfig) -> dict:
    """The JSON form `--config` reads."""
    data = asdict(config)
    for key in ("state_dir", "tftp_root", "inventory_path"):
        data[key] = str(data[key])
    return data
