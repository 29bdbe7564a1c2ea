"""Redfish driver on sushy (the client Ironic uses), behind the same interface as IPMI."""

from __future__ import annotations

import threading
import time

import requests
import sushy
from sushy import exceptions as sushy_exc
from sushy.auth import BasicAuth

from .base import BmcTarget, BootDevice, PowerState
from .errors import BmcAuthError, BmcBusy, BmcError, BmcTimeout, BmcUnreachable, BmcUnsupported

_POWER = {sushy.PowerState.ON: PowerState.ON, sushy.PowerState.OFF: PowerState.OFF}
_SOURCE_BY_DEVICE = {BootDevice.PXE: sushy.BootSource.PXE, BootDevice.DISK: sushy.BootSource.HDD}
_DEVICE_BY_SOURCE = {
    sushy.BootSource.PXE: BootDevice.PXE,
    sushy.BootSource.HDD: BootDevice.DISK,
    sushy.BootSource.NONE: BootDevice.DEFAULT,
}


class RedfishDriver:
    """One Redfish BMC (its single ComputerSystem).

    ``target.address`` may carry a scheme (``https://10.0.0.5``); without one, port 443 means HTTPS and any
    other port plain HTTP. Certificates are not verified: BMCs ship self-signed ones and the management
    network is the trust boundary. Every HTTP request is bounded by ``target.timeout_s``.
    """

    def __init__(self, target: BmcTarget):
        self.target = target
        if "://" in target.address:
            self._url = f"{target.address.rstrip('/')}:{target.port}"
        else:
            scheme = "https" if target.port == 443 else "http"
            host = f"[{target.address}]" if ":" in target.address else target.address
            self._url = f"{scheme}://{host}:{target.port}"
        self._root: sushy.Sushy | None = None
        self._system_path: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedfishDriver({self.target.endpoint})"

    # -- plumbing --------------------------------------------------------------------------------------------

    def _system(self):
        with self._lock:
            if self._root is None:
                self._root = sushy.Sushy(
                    self._url,
                    auth=BasicAuth(self.target.username, self.target.password),
                    verify=False,
                    # sushy treats 0 retries as "use the default" (3, two seconds apart); 1 means no retry.
                    server_side_retries=1,
                    server_side_retries_delay=0.05,
                    read_timeout=self.target.timeout_s,
                    connect_timeout=self.target.timeout_s,
                )
            if self._system_path is None:
                members = self._root.get_system_collection().members_identities
                if not members:
                    raise BmcUnsupported(self.target.endpoint, "the Redfish service lists no ComputerSystem")
                self._system_path = sorted(members)[0]
            return self._root.get_system(self._system_path)

    def _run(self, what: str, operation):
        try:
            return operation()
        except BmcError:
            raise
        except sushy_exc.AccessError as exc:
            raise BmcAuthError(
                self.target.endpoint,
                f"{what}: credentials for user {self.target.username!r} rejected (HTTP {exc.status_code})",
            ) from None
        except sushy_exc.ConnectionError as exc:
            cause = exc.__context__  # sushy raises it while handling the requests exception
            if isinstance(cause, requests.exceptions.Timeout):
                detail = f"{what}: no answer within {self.target.timeout_s:g} s"
                raise BmcTimeout(self.target.endpoint, detail) from None
            reason = type(cause).__name__ if cause is not None else "connection failed"
            raise BmcUnreachable(self.target.endpoint, f"{what}: cannot connect ({reason})") from None
        except sushy_exc.HTTPError as exc:
            detail = f"{what} refused with HTTP {exc.status_code}: {exc.detail or exc.code}"
            if exc.status_code in (501, 400, 404, 405, 409):
                raise BmcUnsupported(self.target.endpoint, detail) from None
            if exc.status_code in (429, 503):
                raise BmcBusy(self.target.endpoint, detail) from None
            raise BmcError(self.target.endpoint, detail) from None
        except (
            sushy_exc.MissingActionError,
            sushy_exc.MissingAttributeError,
            sushy_exc.InvalidParameterValueError,
            sushy_exc.UnknownDefaultError,
        ) as exc:
            raise BmcUnsupported(self.target.endpoint, f"{what}: {exc}") from None
        except sushy_exc.SushyError as exc:
            raise BmcError(self.target.endpoint, f"{what}: {exc}") from None

    def _reset(self, what: str, reset_type: sushy.ResetType) -> None:
        self._run(what, lambda: self._system().reset_system(reset_type))

    # -- interface -------------------------------------------------------------------------------------------

    def power_state(self) -> PowerState:
        return _POWER.get(self._run("power state", lambda: self._system().power_state), PowerState.UNKNOWN)

    def _set_power(self, what: str, reset_type: sushy.ResetType, settled: PowerState) -> None:
        try:
            self._reset(what, reset_type)
        except BmcUnsupported:
            # Many BMCs answer 400/409 to "On" when already on; that is success for us.
            if self.power_state() != settled:
                raise

    def power_on(self) -> None:
        self._set_power("power on", sushy.ResetType.ON, PowerState.ON)

    def power_off(self, soft: bool = False) -> None:
        if soft:
            self._set_power("soft power off", sushy.ResetType.GRACEFUL_SHUTDOWN, PowerState.OFF)
        else:
            self._set_power("power off", sushy.ResetType.FORCE_OFF, PowerState.OFF)

    def power_cycle(self) -> None:
        if self.power_state() != PowerState.ON:
            self.power_on()
            return
        try:
            self._reset("reset", sushy.ResetType.FORCE_RESTART)
        except BmcUnsupported:
            # sushy-tools' emulator answers PowerCycle with 501, some BMCs lack ForceRestart: do it by hand.
            self._reset("power off for reset", sushy.ResetType.FORCE_OFF)
            self._reset("power on after reset", sushy.ResetType.ON)

    def set_boot_device(self, device: BootDevice, once: bool = True, uefi: bool = False) -> None:
        device = BootDevice(device)
        if device not in _SOURCE_BY_DEVICE:
            raise BmcUnsupported(self.target.endpoint, f"cannot set boot device {device}")
        enabled = sushy.BootSourceOverrideEnabled.ONCE if once else sushy.BootSourceOverrideEnabled.CONTINUOUS
        mode = sushy.BootSourceOverrideMode.UEFI if uefi else sushy.BootSourceOverrideMode.LEGACY
        self._run(
            f"set boot device {device}",
            lambda: self._system().set_system_boot_options(_SOURCE_BY_DEVICE[device], enabled=enabled, mode=mode),
        )

    def get_boot_device(self) -> BootDevice:
        boot = self._run("get boot device", lambda: self._system().boot)
        if boot is None or boot.enabled in (None, sushy.BootSourceOverrideEnabled.DISABLED):
            return BootDevice.DEFAULT
        return _DEVICE_BY_SOURCE.get(boot.target, BootDevice.OTHER)

    def ping(self) -> float:
        # The service root is readable without credentials; the systems collection is not.
        started = time.monotonic()
        self._run("ping", lambda: self._system())
        return time.monotonic() - started
