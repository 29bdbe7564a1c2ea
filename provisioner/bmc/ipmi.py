"""IPMI-over-LAN (RMCP+) driver on pyghmi: raw chassis commands, decoded into our own types."""

from __future__ import annotations

import time

from pyghmi.ipmi.private.constants import ipmi_completion_codes

from . import ipmi_health
from .base import BmcTarget, BootDevice, PowerState, StorageController, VolumeRequest, VolumeResult
from .errors import BmcAuthError, BmcBusy, BmcError, BmcUnsupported
from .health import LogEntry, SensorReading
from .ipmi_loop import get_loop, wait
from .media import Media
from .serial import IpmiSerialConsole

NETFN_CHASSIS = 0x00
NETFN_APP = 0x06
CMD_GET_DEVICE_ID = 0x01
CMD_CHASSIS_STATUS = 0x01
CMD_CHASSIS_CONTROL = 0x02
CMD_SET_BOOT_OPTIONS = 0x08
CMD_GET_BOOT_OPTIONS = 0x09

CONTROL_POWER_DOWN = 0x00
CONTROL_POWER_UP = 0x01
CONTROL_HARD_RESET = 0x03
CONTROL_SOFT_SHUTDOWN = 0x05

BOOT_PARAM_FLAGS = 0x05
BOOT_FLAG_VALID = 0x80
BOOT_FLAG_PERSISTENT = 0x40
BOOT_FLAG_EFI = 0x20
# Boot device selector, bits 5:2 of boot flags data byte 2 (IPMI 2.0 table 28-14).
# 0x5 is the CD/DVD drive: a real one, or the virtual CD some BMCs attach through their own web UI (IPMI has no
# command to insert media; Redfish's virtual media is its own capability).
_SELECTOR_BY_DEVICE = {BootDevice.PXE: 0x1, BootDevice.DISK: 0x2, BootDevice.CD: 0x5}
_DEVICE_BY_SELECTOR = {
    0x0: BootDevice.DEFAULT,
    0x1: BootDevice.PXE,
    0x2: BootDevice.DISK,
    0x3: BootDevice.DISK,
    0x5: BootDevice.CD,
}

# Completion codes that mean "not now" rather than "never".
_BUSY_CODES = {0xC0, 0xC3, 0xCE, 0xCF}
_PRIVILEGE_CODES = {0xD4}


def _answer(target: BmcTarget, what: str, response: dict) -> bytes:
    code = response.get("code", 0)
    if code:
        text = ipmi_completion_codes.get(code) or response.get("error") or "unknown"
        detail = f"{what} refused with completion code 0x{code:02X} ({text})"
        if code in _BUSY_CODES:
            exc = BmcBusy(target.endpoint, detail)
        elif code in _PRIVILEGE_CODES:
            exc = BmcAuthError(target.endpoint, f"{detail}; the account needs operator privilege")
        elif code == 0xFF:
            exc = BmcError(target.endpoint, detail)
        else:
            exc = BmcUnsupported(target.endpoint, detail)
        exc.completion_code = code  # the health reads tell "no such record" from other refusals by it
        raise exc
    return bytes(response.get("data", b""))


def _power(data: bytes) -> PowerState:
    if not data:
        return PowerState.UNKNOWN
    return PowerState.ON if data[0] & 0x01 else PowerState.OFF


NO_STORAGE = "the IPMI driver has no storage service: hardware RAID needs Redfish"
NO_MEDIA = "IPMI has no command to insert virtual media: it needs Redfish"


class IpmiDriver:
    """One BMC over IPMI 2.0 / RMCP+. Every call is bounded by ``target.timeout_s`` (login included)."""

    def __init__(self, target: BmcTarget):
        self.target = target

    def __repr__(self) -> str:
        return f"IpmiDriver({self.target.endpoint})"

    def _call(
        self, what: str, netfn: int, command: int, data: tuple[int, ...] = (), *, target: BmcTarget | None = None
    ) -> bytes:
        """One round trip; ``target`` may narrow the timeout (a call under an overall budget). A refusal carries
        its IPMI completion code as ``completion_code``."""
        # Looked up per call, not kept: after a fork (an RQ work horse) the child needs its own loop.
        response = get_loop().call(target or self.target, netfn, command, data)
        return _answer(self.target, what, response)

    def power_state(self) -> PowerState:
        # Get Chassis Status is one round trip; pyghmi's get_power() costs two.
        return _power(self._call("chassis status", NETFN_CHASSIS, CMD_CHASSIS_STATUS))

    @staticmethod
    def power_states(targets: list[BmcTarget]) -> list[PowerState | BmcError]:
        """Read many BMCs' power at once through the one IPMI loop: every request in flight together, each
        with its own deadline, so a dead BMC costs its timeout and delays no other. In ``targets``' order."""
        loop = get_loop()
        futures = loop.submit_many([(target, NETFN_CHASSIS, CMD_CHASSIS_STATUS, ()) for target in targets])
        results: list[PowerState | BmcError] = []
        for target, future in zip(targets, futures, strict=True):
            try:
                results.append(_power(_answer(target, "chassis status", wait(target, future))))
            except BmcError as exc:
                results.append(exc)
        return results

    def check_login(self) -> float:
        """Log in afresh, with one password check at most, and ask for the device id: the credential test.
        Returns the round-trip time; raises BmcAuthError when the BMC rejects the credentials."""
        started = time.monotonic()
        future = get_loop().submit(self.target, NETFN_APP, CMD_GET_DEVICE_ID, single_attempt=True)
        _answer(self.target, "get device id", wait(self.target, future))
        return time.monotonic() - started

    def _control(self, what: str, directive: int, settled: PowerState | None) -> None:
        try:
            self._call(what, NETFN_CHASSIS, CMD_CHASSIS_CONTROL, (directive,))
        except BmcUnsupported:
            # Some BMCs refuse "power up" when already up (and "down" when down); that is success for us.
            if settled is None or self.power_state() != settled:
                raise

    def power_on(self) -> None:
        self._control("power on", CONTROL_POWER_UP, PowerState.ON)

    def power_off(self, soft: bool = False) -> None:
        if soft:
            self._control("soft power off", CONTROL_SOFT_SHUTDOWN, PowerState.OFF)
        else:
            self._control("power off", CONTROL_POWER_DOWN, PowerState.OFF)

    def power_cycle(self) -> None:
        # "Power cycle" (directive 2) is refused by many BMCs when the chassis is off; decide ourselves.
        if self.power_state() == PowerState.ON:
            self._control("reset", CONTROL_HARD_RESET, None)
        else:
            self.power_on()

    def set_boot_device(self, device: BootDevice, once: bool = True, uefi: bool | None = None) -> None:
        # IPMI's boot flags carry the EFI bit in every request; unknown (None) asks for legacy, as before.
        device = BootDevice(device)
        if device not in _SELECTOR_BY_DEVICE:
            raise BmcUnsupported(self.target.endpoint, f"cannot set boot device {device}")
        flags = BOOT_FLAG_VALID | (0 if once else BOOT_FLAG_PERSISTENT) | (BOOT_FLAG_EFI if uefi else 0)
        selector = _SELECTOR_BY_DEVICE[device] << 2
        data = (BOOT_PARAM_FLAGS, flags, selector, 0, 0, 0)
        self._call(f"set boot device {device}", NETFN_CHASSIS, CMD_SET_BOOT_OPTIONS, data)

    def get_boot_device(self) -> BootDevice:
        data = self._call("get boot device", NETFN_CHASSIS, CMD_GET_BOOT_OPTIONS, (BOOT_PARAM_FLAGS, 0, 0))
        # data: parameter version, parameter selector, then the five boot-flag bytes.
        if len(data) < 4 or not data[2] & BOOT_FLAG_VALID:
            return BootDevice.DEFAULT
        return _DEVICE_BY_SELECTOR.get((data[3] >> 2) & 0x0F, BootDevice.OTHER)

    def ping(self) -> float:
        started = time.monotonic()
        self._call("get device id", NETFN_APP, CMD_GET_DEVICE_ID)
        return time.monotonic() - started

    def sensors(self) -> list[SensorReading]:
        return ipmi_health.sensors(self)

    def events(self) -> list[LogEntry]:
        return ipmi_health.events(self)

    def clear_events(self) -> int:
        return ipmi_health.clear_events(self)

    def storage(self) -> list[StorageController]:
        raise BmcUnsupported(self.target.endpoint, NO_STORAGE)

    def create_volume(self, request: VolumeRequest) -> VolumeResult:
        raise BmcUnsupported(self.target.endpoint, NO_STORAGE)

    def media(self) -> Media:
        raise BmcUnsupported(self.target.endpoint, NO_MEDIA)

    def insert_media(self, url: str) -> None:
        raise BmcUnsupported(self.target.endpoint, NO_MEDIA)

    def eject_media(self) -> bool:
        raise BmcUnsupported(self.target.endpoint, NO_MEDIA)

    def console(self, label: str = "") -> IpmiSerialConsole:
        """Serial-over-LAN (not started: the caller awaits ``start()``); ``label`` is for the fake driver."""
        return IpmiSerialConsole(self.target)
