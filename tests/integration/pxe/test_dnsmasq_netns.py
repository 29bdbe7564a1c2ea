"""The generated dnsmasq config, run for real: dnsmasq in one network namespace, DHCP clients in another.

Two namespaces joined by a veth pair made for this test alone (10.213.0.0/24 exists only inside them). The server
side runs the rendered config with nothing else (--conf-file only); the client side runs busybox udhcpc presenting
BIOS, UEFI and iPXE identities, then fetches the per-MAC configs over TFTP with tftp-hpa. For proxy-DHCP, which
never hands out an address, a small probe sends the PXE ROM's packets itself and reads the offer off the wire.
"""

import ipaddress
import json
import os
import pwd
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.pxe import kernel_cmdline, write_all, write_defaults
from provisioner.pxe.bootconfig import render_pxelinux_default
from provisioner.pxe.dnsmasq import Reservation, SiteDhcp, render

REPO = Path(__file__).resolve().parents[3]
SERVER_IP = "10.213.0.1"
CLIENT_STATIC_IP = "10.213.0.60"  # outside the range: the client's address for TFTP and the proxy probe
PREFIX = 24
BASE_URL = f"http://{SERVER_IP}:8000"
IPXE_URL = f"{BASE_URL}/boot/ipxe?mac=${{netX/mac}}"
# dnsmasq drops root for this user; tftp-secure then serves only files it owns, as in production where the
# site's worker writes the boot configs and dnsmasq runs as the worker's user.
DNSMASQ_USER = "nobody"


@dataclass(frozen=True)
class Identity:
    """What a firmware says about itself in DHCP: its vendor class, architecture (93), iPXE's markers."""

    name: str
    mac: str
    arch: int
    ipxe: str = ""  # "user-class": iPXE's user class 77; "option-175": iPXE's feature option only

    def udhcpc_args(self) -> list[str]:
        args = ["-V", f"PXEClient:Arch:{self.arch:05d}:UNDI:002001", "-x", f"0x5d:{self.arch:04x}"]
        if self.ipxe == "user-class":
            args += ["-x", "0x4d:" + b"iPXE".hex()]
        elif self.ipxe == "option-175":
            args += ["-x", "0xaf:130101"]  # iPXE's encapsulated options: HTTP support (19) = 1
        return args


BIOS = Identity("bios", "52:54:00:d0:00:01", 0)
UEFI_7 = Identity("uefi-7", "52:54:00:d0:00:02", 7)
UEFI_9 = Identity("uefi-9", "52:54:00:d0:00:03", 9)
IPXE_UEFI = Identity("ipxe-uefi", "52:54:00:d0:00:04", 7, ipxe="user-class")
IPXE_BIOS = Identity("ipxe-bios", "52:54:00:d0:00:05", 0, ipxe="option-175")
UNRESERVED = Identity("unreserved-bios", "52:54:00:d0:00:99", 0)
RESERVED = {
    BIOS: "10.213.0.11",
    UEFI_7: "10.213.0.12",
    UEFI_9: "10.213.0.13",
    IPXE_UEFI: "10.213.0.14",
    IPXE_BIOS: "10.213.0.15",
}


def _run(argv: list, timeout: float = 20, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs)


class Net:
    """Two namespaces joined by a veth pair; dnsmasq runs in `server`, clients in `client`."""

    def __init__(self, work: Path) -> None:
        tag = secrets.token_hex(3)
        self.work = work
        self.server, self.client = f"pv-srv-{tag}", f"pv-cli-{tag}"
        # veth names are limited to 15 characters.
        self.server_if, self.client_if = f"pvs{tag}", f"pvc{tag}"
        self.dnsmasq: subprocess.Popen | None = None
        self.log = work / "dnsmasq.log"

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = _run(["ip", *args], timeout=10)
        if check and result.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
        return result

    def up(self) -> None:
        self.ip("netns", "add", self.server)
        self.ip("netns", "add", self.client)
        self.ip("link", "add", self.server_if, "type", "veth", "peer", "name", self.client_if)
        self.ip("link", "set", self.server_if, "netns", self.server)
        self.ip("link", "set", self.client_if, "netns", self.client)
        self.ip("-n", self.server, "addr", "add", f"{SERVER_IP}/{PREFIX}", "dev", self.server_if)
        for ns, dev in ((self.server, self.server_if), (self.server, "lo"), (self.client, "lo")):
            self.ip("-n", ns, "link", "set", dev, "up")

    def down(self) -> None:
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.terminate()
            try:
                self.dnsmasq.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.dnsmasq.kill()
                self.dnsmasq.wait(timeout=5)
        # Deleting a namespace deletes the veth end inside it, and with it the peer.
        for ns in (self.server, self.client):
            self.ip("netns", "del", ns, check=False)

    def start_dnsmasq(self, conf_text: str) -> None:
        conf = self.work / "dnsmasq.conf"
        conf.write_text(conf_text)
        with self.log.open("w") as log:
            self.dnsmasq = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.server,
                    shutil.which("dnsmasq") or "/usr/sbin/dnsmasq",
                    # --keep-in-foreground, not --no-daemon: the latter is debug mode, which stays root and so
                    # would serve files tftp-secure refuses in production.
                    "--keep-in-foreground",
                    "--log-facility=-",
                    f"--conf-file={conf}",
                    f"--pid-file={self.work / 'dnsmasq.pid'}",
                    f"--dhcp-leasefile={self.work / 'dnsmasq.leases'}",
                    "--port=0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while "TFTP root is" not in self.log.read_text():
            if self.dnsmasq.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dnsmasq did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def in_client(self, argv: list, timeout: float = 20, **kwargs) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", self.client, *argv], timeout=timeout, **kwargs)

    def client_as(self, mac: str, address: str | None = None) -> None:
        """Give the client interface `mac` (a new machine, as far as DHCP can tell) and optionally an address."""
        self.ip("-n", self.client, "link", "set", self.client_if, "down")
        self.ip("-n", self.client, "addr", "flush", "dev", self.client_if)
        self.ip("-n", self.client, "link", "set", self.client_if, "address", mac)
        if address is not None:
            self.ip("-n", self.client, "addr", "add", f"{address}/{PREFIX}", "dev", self.client_if)
        self.ip("-n", self.client, "link", "set", self.client_if, "up")

    def udhcpc(self, identity: Identity) -> dict[str, str]:
        """Run busybox udhcpc as `identity` until bound; return what its event script saw."""
        self.client_as(identity.mac)
        script = self.work / "udhcpc.sh"
        result = self.in_client(
            [
                "busybox",
                "udhcpc",
                "-f",
                "-q",
                "-n",
                "-t",
                "5",
                "-T",
                "1",
                "-A",
                "1",
                "-i",
                self.client_if,
                "-s",
                script,
                *identity.udhcpc_args(),
            ],
        )
        for line in result.stdout.splitlines():
            if line.startswith("BOUND "):
                return json.loads(line[len("BOUND ") :])
        pytest.fail(f"udhcpc as {identity.name} got no lease:\n{result.stdout}{result.stderr}\n{self.log.read_text()}")

    def tftp_get(self, name: str) -> tuple[bytes | None, str]:
        local = self.work / "fetched"
        local.unlink(missing_ok=True)
        result = self.in_client(["tftp", "-m", "octet", SERVER_IP, "-c", "get", name, local])
        output = result.stdout + result.stderr
        if result.returncode != 0 or "Error code" in output or not local.exists():
            return None, output
        return local.read_bytes(), output


# The event script udhcpc runs: print what it was offered as one JSON line, configure nothing.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in bound|renew)
  printf 'BOUND {"ip":"%s","siaddr":"%s","boot_file":"%s","hostname":"%s","serverid":"%s"}\\n' \\
    "$ip" "$siaddr" "$boot_file" "$hostname" "$serverid";;
esac
exit 0
"""


@pytest.fixture
def net():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    for tool in ("ip", "busybox", "tftp"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is required (listed in .ci/apt-packages; make test installs it)")
    if not (shutil.which("dnsmasq") or os.path.exists("/usr/sbin/dnsmasq")):
        pytest.fail("dnsmasq is required (dnsmasq-base is listed in .ci/apt-packages; make test installs it)")
    # Under /tmp and world-traversable, not pytest's 0700 tmp_path: dnsmasq has dropped to nobody when it
    # opens TFTP files.
    work = Path(tempfile.mkdtemp(prefix="pv-dnsmasq-"))
    work.chmod(0o755)
    net = Net(work)
    try:
        try:
            net.up()
        except RuntimeError as exc:
            pytest.skip(f"network namespaces with veth are not permitted here: {exc}")
        script = work / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        yield net
    finally:
        net.down()
        shutil.rmtree(work, ignore_errors=True)


def tftp_root_with_configs(net: Net, macs: list[str]) -> Path:
    root = net.work / "tftp"
    write_defaults(root)
    for mac in macs:
        cmdline = kernel_cmdline("image", mac=mac, base_url=BASE_URL, token=f"tok-{mac.replace(':', '')}")
        write_all(root, mac=mac, kernel="/images/memory-os/vmlinuz", initrd="/images/memory-os/initrd", cmdline=cmdline)
    owner = pwd.getpwnam(DNSMASQ_USER)
    for path in [root, *root.rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return root


def site(root: Path, interface: str, **mode) -> SiteDhcp:
    return SiteDhcp(
        site="netns",
        interface=interface,
        server_ip=SERVER_IP,
        tftp_root=str(root),
        base_url=BASE_URL,
        user=DNSMASQ_USER,
        **mode,
    )


def test_owning_range_hands_each_identity_its_boot_file_and_reserved_address(net):
    root = tftp_root_with_configs(net, [BIOS.mac, UEFI_7.mac])
    reservations = [Reservation(mac=i.mac, ip=ip, hostname=f"node-{i.name}") for i, ip in RESERVED.items()]
    net.start_dnsmasq(
        render(site(root, interface=net.server_if, dhcp_range=("10.213.0.100", "10.213.0.199")), reservations)
    )

    expected_boot = {
        BIOS: "pxelinux.0",
        UEFI_7: "grubx64.efi",
        UEFI_9: "grubx64.efi",
        IPXE_UEFI: IPXE_URL,
        IPXE_BIOS: IPXE_URL,
    }
    for identity, boot_file in expected_boot.items():
        got = net.udhcpc(identity)
        assert got == {
            "ip": RESERVED[identity],
            "siaddr": SERVER_IP,
            "boot_file": boot_file,
            "hostname": f"node-{identity.name}",
            "serverid": SERVER_IP,
        }, identity.name

    # A machine inventory has no static IP for still boots, from the dynamic range.
    got = net.udhcpc(UNRESERVED)
    assert (
        ipaddress.ip_address("10.213.0.100") <= ipaddress.ip_address(got["ip"]) <= ipaddress.ip_address("10.213.0.199")
    )
    assert got["boot_file"] == "pxelinux.0" and got["hostname"] == ""

    # What the loaders then fetch, over TFTP from the client's side of the wire.
    net.client_as(BIOS.mac, CLIENT_STATIC_IP)
    for name in ("pxelinux.cfg/01-52-54-00-d0-00-01", "grub/grub.cfg-01-52-54-00-d0-00-02"):
        content, output = net.tftp_get(name)
        assert content == (root / name).read_bytes(), output
        assert b"provisioner.token=tok-525400d000" in content
    content, output = net.tftp_get("pxelinux.cfg/01-52-54-00-d0-00-99")
    assert content is None and "Error code 1" in output  # unknown MAC: no per-MAC file...
    content, _ = net.tftp_get("pxelinux.cfg/default")
    assert content == render_pxelinux_default().encode()  # ...so pxelinux falls back to booting the disk

    # tftp-secure: a file the dnsmasq user does not own is refused even though it is world-readable.
    stray = root / "pxelinux.cfg" / "01-52-54-00-d0-00-98"
    stray.write_text("DEFAULT stray\n")
    stray.chmod(0o644)
    content, output = net.tftp_get("pxelinux.cfg/01-52-54-00-d0-00-98")
    assert content is None and "Permission denied" in output, output


# --- proxy-DHCP: the PXE ROM's own packets, since no DHCP client finishes a lease against a proxy ---------------


def _pxe_packet(mac: str, msg_type: int, arch: int, *, ciaddr: str = "0.0.0.0", user_class: bytes = b"") -> bytes:
    xid = secrets.randbits(32)
    chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,
        1,
        6,
        0,
        xid,
        0,
        0x8000,
        socket.inet_aton(ciaddr),
        bytes(4),
        bytes(4),
        bytes(4),
        chaddr,
        b"",
        b"",
    )
    options = [
        (53, bytes([msg_type])),
        (60, f"PXEClient:Arch:{arch:05d}:UNDI:003016".encode()),
        (93, struct.pack("!H", arch)),
        (94, bytes([1, 3, 16])),  # UNDI 3.16, as firmware sends it
        (97, b"\0" + bytes.fromhex(mac.replace(":", "") * 3)[:16]),  # client UUID
    ]
    if user_class:
        options.append((77, user_class))
    body = b"".join(bytes([code, len(value)]) + value for code, value in options)
    return header + b"\x63\x82\x53\x63" + body + b"\xff"


def _parse_reply(packet: bytes) -> dict:
    options, i = {}, 240
    while i < len(packet) and packet[i] != 255:
        if packet[i] == 0:
            i += 1
            continue
        code, length = packet[i], packet[i + 1]
        options[code] = packet[i + 2 : i + 2 + length]
        i += 2 + length
    return {
        "yiaddr": socket.inet_ntoa(packet[16:20]),
        "siaddr": socket.inet_ntoa(packet[20:24]),
        "file": packet[108:236].rstrip(b"\0").decode(),
        "type": options.get(53, b"\0")[0],
        "vendor_class": options.get(60, b"").decode(),
        "pxe_menu": 43 in options,
    }


def probe_main(argv: list[str]) -> None:
    """Run inside the client namespace: send one PXE packet, print the reply as JSON (or null on timeout)."""
    iface, mac, msg_type, arch, user_class, ciaddr, dest, port = argv
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        sock.bind(("0.0.0.0", 68))
        sock.settimeout(1)
        packet = _pxe_packet(mac, int(msg_type), int(arch), ciaddr=ciaddr, user_class=user_class.encode())
        for _ in range(5):
            sock.sendto(packet, (dest, int(port)))
            try:
                while True:
                    reply, _ = sock.recvfrom(2048)
                    if reply[0] == 2 and reply[4:8] == packet[4:8]:
                        print(json.dumps(_parse_reply(reply)))
                        return
            except TimeoutError:
                continue
    print("null")


def probe(net: Net, identity: Identity, msg_type: int, dest: str, port: int) -> dict:
    user_class = "iPXE" if identity.ipxe == "user-class" else ""
    result = net.in_client(
        [
            sys.executable,
            "-c",
            "import sys; from tests.integration.pxe.test_dnsmasq_netns import probe_main; probe_main(sys.argv[1:])",
            net.client_if,
            identity.mac,
            msg_type,
            identity.arch,
            user_class,
            CLIENT_STATIC_IP,
            dest,
            port,
        ],
        cwd=REPO,
    )
    reply = json.loads(result.stdout or "null")
    assert reply is not None, f"no reply to {identity.name}:\n{result.stderr}\n{net.log.read_text()}"
    return reply


def test_proxy_dhcp_offers_boot_information_but_no_address(net):
    root = tftp_root_with_configs(net, [BIOS.mac])
    net.start_dnsmasq(render(site(root, interface=net.server_if, proxy_subnet="10.213.0.0/24")))
    # The existing DHCP server would have given this address; the proxy never does.
    net.client_as(BIOS.mac, CLIENT_STATIC_IP)

    offer = probe(net, BIOS, 1, "255.255.255.255", 67)
    assert offer == {
        "yiaddr": "0.0.0.0",
        "siaddr": SERVER_IP,
        "file": "pxelinux.0",
        "type": 2,
        "vendor_class": "PXEClient",
        "pxe_menu": True,
    }

    offer = probe(net, IPXE_UEFI, 1, "255.255.255.255", 67)
    assert offer["yiaddr"] == "0.0.0.0" and offer["file"] == IPXE_URL

    # UEFI firmware ignores the PXE menu: the proxy sends it on to port 4011, where it names the GRUB image.
    offer = probe(net, UEFI_7, 1, "255.255.255.255", 67)
    assert offer["yiaddr"] == "0.0.0.0" and offer["siaddr"] == SERVER_IP and offer["file"] == ""
    for identity in (UEFI_7, UEFI_9):
        ack = probe(net, identity, 3, SERVER_IP, 4011)
        assert (ack["type"], ack["file"], ack["siaddr"]) == (5, "grubx64.efi", SERVER_IP), identity.name

    # And the BIOS loader's config is there to fetch.
    content, output = net.tftp_get("pxelinux.cfg/01-52-54-00-d0-00-01")
    assert content == (root / "pxelinux.cfg/01-52-54-00-d0-00-01").read_bytes(), output
