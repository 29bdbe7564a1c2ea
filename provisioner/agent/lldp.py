"""LLDP (IEEE 802.1AB): which switch and port each NIC is cabled to, heard from the switch's own announcements.

Switches send an LLDP frame on every port every 30 s by default, so a listener may have to wait that long.
One raw AF_PACKET socket per NIC, all watched together with select: the wait is the same for one NIC or forty,
and ends as soon as every NIC has heard its neighbour.

Hardware quirk: Intel X710/XL710 (i40e) and E810 (ice) NICs run an LLDP agent in their firmware that consumes
the frames before the host sees them; `ethtool --set-priv-flags <nic> disable-fw-lldp on` lets them through.
Such a NIC is reported as having heard nothing.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time

ETH_P_LLDP = 0x88CC
ETH_P_8021Q = 0x8100
# The nearest-bridge group address: switches send LLDP here, and NICs filter it out unless asked to keep it.
LLDP_MULTICAST = bytes.fromhex("0180c200000e")
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
PACKET_OUTGOING = 4

TLV_END, TLV_CHASSIS_ID, TLV_PORT_ID, TLV_PORT_DESCRIPTION, TLV_SYSTEM_NAME = 0, 1, 2, 4, 5
# Chassis ID subtype 4 and port ID subtype 3 are MAC addresses; chassis 5 and port 4 network addresses.
_MAC_SUBTYPES = {TLV_CHASSIS_ID: 4, TLV_PORT_ID: 3}
_ADDRESS_SUBTYPES = {TLV_CHASSIS_ID: 5, TLV_PORT_ID: 4}


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").strip("\x00 \t\r\n")


def _identifier(tlv_type: int, value: bytes) -> str:
    """A chassis or port ID as people read it: a MAC as aa:bb:.., an address as an address, names as text."""
    if not value:
        return ""
    subtype, body = value[0], value[1:]
    if subtype == _MAC_SUBTYPES[tlv_type] and len(body) == 6:
        return ":".join(f"{b:02x}" for b in body)
    if subtype == _ADDRESS_SUBTYPES[tlv_type] and body:
        family, address = body[0], body[1:]
        try:
            if family == 1 and len(address) == 4:
                return str(ipaddress.IPv4Address(address))
            if family == 2 and len(address) == 16:
                return str(ipaddress.IPv6Address(address))
        except ValueError:
            pass
        return address.hex()
    text = _text(body)
    # An agent circuit ID (port subtype 6) or a vendor's binary chassis component is not text.
    return text if text.isprintable() else body.hex()


def parse(frame: bytes) -> dict | None:
    """The neighbour an LLDP frame names: {"chassis_id", "system_name", "port_id", "port_description"}, or None
    when the frame is no LLDPDU, or one without the chassis and port IDs every LLDPDU must carry."""
    if len(frame) < 14:
        return None
    ethertype, offset = struct.unpack_from("!H", frame, 12)[0], 14
    if ethertype == ETH_P_8021Q and len(frame) >= 18:
        # The kernel normally takes the VLAN tag off into metadata; a NIC that does not leaves it in the frame.
        ethertype, offset = struct.unpack_from("!H", frame, 16)[0], 18
    if ethertype != ETH_P_LLDP:
        return None
    found: dict[int, bytes] = {}
    while offset + 2 <= len(frame):
        header = struct.unpack_from("!H", frame, offset)[0]
        tlv_type, length = header >> 9, header & 0x1FF
        offset += 2
        if tlv_type == TLV_END:
            break
        if offset + length > len(frame):
            return None  # truncated
        found.setdefault(tlv_type, frame[offset : offset + length])
        offset += length
    if TLV_CHASSIS_ID not in found or TLV_PORT_ID not in found:
        return None
    return {
        "chassis_id": _identifier(TLV_CHASSIS_ID, found[TLV_CHASSIS_ID]),
        "system_name": _text(found.get(TLV_SYSTEM_NAME, b"")),
        "port_id": _identifier(TLV_PORT_ID, found[TLV_PORT_ID]),
        "port_description": _text(found.get(TLV_PORT_DESCRIPTION, b"")),
    }


def _open(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_LLDP))
    try:
        sock.bind((name, ETH_P_LLDP))
        membership = struct.pack("iHH8s", socket.if_nametoindex(name), PACKET_MR_MULTICAST, 6, LLDP_MULTICAST)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, membership)
        except OSError:
            pass  # a device without a multicast filter (lo) passes everything anyway
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def listen(interfaces: list[str], seconds: float) -> tuple[dict[str, dict], list[str], float]:
    """Listen on `interfaces` for up to `seconds`: the neighbour each heard, notes on what failed, and how long
    it listened. A NIC stops being listened on once it heard one frame; all done, the wait ends early."""
    started = time.monotonic()
    notes: list[str] = []
    sockets: dict[socket.socket, str] = {}
    for name in interfaces:
        try:
            sockets[_open(name)] = name
        except OSError as exc:
            notes.append(f"cannot listen for LLDP on {name}: {exc.strerror or exc}")
    opened = set(sockets.values())
    heard: dict[str, dict] = {}
    deadline = started + max(0.0, seconds)
    try:
        while sockets:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(sockets), [], [], left)
            for sock in ready:
                neighbour = _receive(sock)
                if neighbour is not None:
                    heard[sockets.pop(sock)] = neighbour
                    sock.close()
    finally:
        for sock in sockets:
            sock.close()
    elapsed = time.monotonic() - started
    for name in interfaces:
        if name in opened and name not in heard:
            notes.append(f"no LLDP frame heard on {name} in {elapsed:.0f} s")
    return heard, notes, elapsed


def _receive(sock: socket.socket) -> dict | None:
    """The neighbour in the frames waiting on `sock`, if one of them is an LLDPDU someone else sent."""
    while True:
        try:
            frame, address = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return None
        if address[2] == PACKET_OUTGOING:
            continue  # our own frame, seen on the way out
        neighbour = parse(frame)
        if neighbour is not None:
            return neighbour
