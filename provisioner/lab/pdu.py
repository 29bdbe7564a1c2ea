"""A switched PDU on loopback for the lab: an SNMP v2c agent that speaks APC's PowerNet-MIB outlet control
(the ``apc`` profile of provisioner.pdu), so the demo's machines have outlets a technician can switch.

It answers GET and SET of sysUpTime and of rPDUOutletControlOutletCommand for outlets 1..N, drops requests
with a wrong community (as real agents do), and calls ``on_switch(outlet, powered)`` hooks when an outlet's
power changes, so the lab can cut or restore a machine's mains.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902, rfc1905

from provisioner.pdu.profiles import SYS_UPTIME, profile

log = logging.getLogger(__name__)

_V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
_APC = profile("apc")
_UPTIME_OID = rfc1902.ObjectName(SYS_UPTIME)


class LoopbackPdu:
    """``outlets`` switched outlets behind ``community`` on 127.0.0.1:``port`` (0: a free port)."""

    def __init__(self, community: str, outlets: int = 24, port: int = 0, address: str = "127.0.0.1"):
        self.community = community
        self.address = address
        self.powered = dict.fromkeys(range(1, outlets + 1), True)
        self.on_switch: list[Callable[[int, bool], None]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((address, port))
        self.port = self._sock.getsockname()[1]
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"LoopbackPdu({self.address}:{self.port}, {len(self.powered)} outlets)"

    def start(self) -> LoopbackPdu:
        self._thread = threading.Thread(target=self._serve, name=f"lab-pdu-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._sock.close()
        if self._thread is not None:
            self._thread.join(5)

    def _serve(self) -> None:
        while not self._stopping:
            try:
                data, peer = self._sock.recvfrom(65535)
            except OSError:
                return
            try:
                answer = self._answer(data)
            except Exception:  # a malformed datagram must not stop the agent
                log.debug("lab PDU %s: dropped a request it could not read", self.port, exc_info=True)
                continue
            if answer is not None:
                self._sock.sendto(answer, peer)

    def _answer(self, data: bytes) -> bytes | None:
        message, _ = decoder.decode(data, asn1Spec=_V2C.Message())
        if str(_V2C.apiMessage.get_community(message)) != self.community:
            return None
        request = _V2C.apiMessage.get_pdu(message)
        response = _V2C.apiPDU.get_response(request)
        is_set = request.isSameTypeWith(rfc1905.SetRequestPDU())
        if not is_set and not request.isSameTypeWith(rfc1905.GetRequestPDU()):
            return None
        binds = []
        for oid, value in _V2C.apiPDU.get_varbinds(request):
            binds.append((oid, self._set(oid, value) if is_set else self._get(oid)))
        _V2C.apiPDU.set_varbinds(response, binds)
        _V2C.apiMessage.set_pdu(message, response)
        return encoder.encode(message)

    def _outlet(self, oid) -> int | None:
        prefix = rfc1902.ObjectName(_APC.command_oid)
        if prefix.isPrefixOf(oid) and len(oid) == len(prefix) + 1 and int(oid[-1]) in self.powered:
            return int(oid[-1])
        return None

    def _get(self, oid):
        if oid == _UPTIME_OID:
            return rfc1902.TimeTicks(int((time.monotonic() - self._started) * 100))
        outlet = self._outlet(oid)
        if outlet is None:
            return rfc1905.noSuchInstance
        return rfc1902.Integer(_APC.on if self.powered[outlet] else _APC.off)

    def _set(self, oid, value):
        outlet = self._outlet(oid)
        if outlet is None:
            return rfc1905.noSuchInstance
        command = int(value)
        if command == _APC.cycle:
            self._switch(outlet, False)
            self._switch(outlet, True)
        elif command in (_APC.on, _APC.off):
            self._switch(outlet, command == _APC.on)
        return rfc1902.Integer(command)

    def _switch(self, outlet: int, powered: bool) -> None:
        with self._lock:
            changed = self.powered[outlet] != powered
            self.powered[outlet] = powered
        if not changed:
            return
        for hook in self.on_switch:
            try:
                hook(outlet, powered)
            except Exception:
                log.exception("lab PDU %s outlet %s hook failed", self.port, outlet)
