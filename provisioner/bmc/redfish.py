"""Redfish driver on sushy (the client Ironic uses), behind the same interface as IPMI."""

from __future__ import annotations

import threading
import time

import requests
import sushy
from sushy import exceptions as sushy_exc
from sushy.auth import BasicAuth
from sushy.taskmonitor import TaskMonitor

from . import redfish_health
from .base import (
    BmcTarget,
    BootDevice,
    Drive,
    PowerState,
    StorageController,
    Volume,
    VolumeRequest,
    VolumeResult,
    raid_drive_count_problem,
)
from .errors import BmcAuthError, BmcBusy, BmcError, BmcTimeout, BmcUnreachable, BmcUnsupported
from .health import LogEntry, SensorReading
from .media import Media, url_problem

_POWER = {sushy.PowerState.ON: PowerState.ON, sushy.PowerState.OFF: PowerState.OFF}
_SOURCE_BY_DEVICE = {
    BootDevice.PXE: sushy.BootSource.PXE,
    BootDevice.DISK: sushy.BootSource.HDD,
    BootDevice.CD: sushy.BootSource.CD,
}
_DEVICE_BY_SOURCE = {
    sushy.BootSource.PXE: BootDevice.PXE,
    sushy.BootSource.HDD: BootDevice.DISK,
    sushy.BootSource.CD: BootDevice.CD,
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

    def set_boot_device(self, device: BootDevice, once: bool = True, uefi: bool | None = None) -> None:
        device = BootDevice(device)
        if device not in _SOURCE_BY_DEVICE:
            raise BmcUnsupported(self.target.endpoint, f"cannot set boot device {device}")
        enabled = sushy.BootSourceOverrideEnabled.ONCE if once else sushy.BootSourceOverrideEnabled.CONTINUOUS
        # None: no BootSourceOverrideMode in the request, so the BMC keeps the mode it has (a UEFI-only server
        # refuses Legacy with HTTP 400; another would switch to it).
        mode = None
        if uefi is not None:
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

    # -- virtual media ---------------------------------------------------------------------------------------

    def _virtual_cd(self):
        """The virtual media device that takes a CD or DVD image. Newer services link VirtualMedia from the
        system, older ones (iDRAC 8, iLO 5 before 2.x) only from its manager: the system first, as Ironic does."""
        system = self._system()
        collections = []
        try:
            collections.append(system.virtual_media)
        except sushy_exc.MissingAttributeError:
            pass
        if not collections:
            for manager in system.managers:
                try:
                    collections.append(manager.virtual_media)
                except sushy_exc.MissingAttributeError:
                    continue
        optical = {sushy.VirtualMediaType.CD, sushy.VirtualMediaType.DVD}
        for collection in collections:
            for device in collection.get_members():
                if optical & set(device.media_types or ()):
                    return device
        raise BmcUnsupported(self.target.endpoint, "the Redfish service has no virtual media device for a CD or DVD")

    def media(self) -> Media:
        def read():
            device = self._virtual_cd()
            return Media(
                device=device.identity,
                inserted=bool(device.inserted),
                image=device.image or "",
                image_name=device.image_name or "",
            )

        return self._run("read virtual media", read)

    def insert_media(self, url: str) -> None:
        problem = url_problem(url)
        if problem:
            raise BmcUnsupported(self.target.endpoint, f"insert virtual media: {problem}")

        def insert():
            device = self._virtual_cd()
            if device.inserted and device.image == url:
                return  # a retry after a worker died mid-call: the BMC holds it already
            if device.inserted:
                # Most BMCs refuse InsertMedia over an inserted image (HTTP 400 or 409): eject what is there.
                device.eject_media()
            device.insert_media(url, inserted=True, write_protected=True)

        self._run("insert virtual media", insert)

    def eject_media(self) -> bool:
        def eject():
            device = self._virtual_cd()
            if not device.inserted and not device.image:
                return False
            device.eject_media()
            return True

        return self._run("eject virtual media", eject)

    # -- sensors and the event log (redfish_health.py) ---------------------------------------------------------

    def sensors(self) -> list[SensorReading]:
        return self._run("read sensors", lambda: redfish_health.sensors(self))

    def events(self) -> list[LogEntry]:
        return self._run("read the event log", lambda: redfish_health.events(self))

    def clear_events(self) -> int:
        return self._run("clear the event log", lambda: redfish_health.clear_events(self))

    # -- hardware RAID ---------------------------------------------------------------------------------------

    def _storages(self) -> list:
        # Storage resources whose ids we pick by: the Redfish spec makes a resource's Id the last segment of
        # its path, so drive ids come from the links alone, without one GET per drive.
        return list(self._system().storage.get_members())

    def storage(self) -> list[StorageController]:
        def read():
            out = []
            for stg in self._storages():
                drives = tuple(
                    Drive(
                        id=d.identity,
                        name=d.name or "",
                        capacity_bytes=d.capacity_bytes,
                        media_type=str(d.media_type or ""),
                        serial=d.serial_number or "",
                    )
                    for d in stg.drives
                )
                levels: list[str] = []
                for ctl in stg.storage_controllers:
                    levels += [t.value for t in ctl.raid_types or () if t.value not in levels]
                out.append(
                    StorageController(
                        id=stg.identity,
                        name=stg.name or "",
                        raid_levels=tuple(levels),
                        drives=drives,
                        volumes=tuple(_volume(v) for v in _volumes(stg)),
                    )
                )
            return out

        return self._run("read storage", read)

    def create_volume(self, request: VolumeRequest) -> VolumeResult:
        return self._run(f"create {request.level} volume {request.name!r}", lambda: self._create_volume(request))

    def _create_volume(self, request: VolumeRequest) -> VolumeResult:
        endpoint = self.target.endpoint
        storages = self._storages()
        if request.controller is not None:
            stg = next((s for s in storages if s.identity == request.controller), None)
            if stg is None:
                known = ", ".join(s.identity for s in storages) or "none"
                raise BmcUnsupported(endpoint, f"no storage controller {request.controller!r} (it has: {known})")
        else:
            with_drives = [s for s in storages if s.drives_identities]
            if len(with_drives) != 1:
                known = ", ".join(s.identity for s in with_drives) or "none"
                raise BmcUnsupported(
                    endpoint, f"{len(with_drives)} storage controllers have drives ({known}): name the controller"
                )
            stg = with_drives[0]
        drive_paths = {path.rstrip("/").rsplit("/", 1)[-1]: path for path in stg.drives_identities or ()}
        for vol in _volumes(stg):
            if vol.name == request.name:
                return VolumeResult(stg.identity, vol.identity, created=False)
        if request.drives is None:
            wanted: tuple[str, ...] = ()
        else:
            wanted = tuple(drive_paths) if request.drives == ("all",) else request.drives
            unknown = [d for d in wanted if d not in drive_paths]
            if unknown:
                raise BmcUnsupported(
                    endpoint,
                    f"controller {stg.identity!r} has no drive {', '.join(map(repr, unknown))} "
                    f"(it has: {', '.join(drive_paths) or 'none'})",
                )
            problem = raid_drive_count_problem(request.level, len(wanted))
            if problem:
                raise BmcUnsupported(endpoint, f"controller {stg.identity!r}: {problem}")
        payload: dict = {"Name": request.name, "RAIDType": str(request.level)}
        if wanted:
            payload["Links"] = {"Drives": [{"@odata.id": drive_paths[d]} for d in wanted]}
        if request.capacity_bytes is not None:
            payload["CapacityBytes"] = request.capacity_bytes
        apply_time = _apply_time(stg.volumes)
        applied = apply_time.value if apply_time is not None else ""
        # Never sushy's blocking wait: a BMC that takes the request as a task (HTTP 202) is left to apply it, at
        # once or when the machine next resets (the power cycle that boots the agent).
        created = stg.volumes.create(payload, apply_time=apply_time)
        if isinstance(created, TaskMonitor):
            return VolumeResult(stg.identity, "", wanted, task=created.task_monitor_uri, apply_time=applied)
        return VolumeResult(stg.identity, created.identity if created is not None else "", wanted, apply_time=applied)


def _volumes(stg) -> list:
    try:
        return list(stg.volumes.get_members())
    except sushy_exc.MissingAttributeError:
        return []  # a storage subsystem without a Volumes collection holds no volumes


def _volume(vol) -> Volume:
    links = (vol.json.get("Links") or {}).get("Drives") or []
    drives = tuple(str(link.get("@odata.id", "")).rstrip("/").rsplit("/", 1)[-1] for link in links)
    return Volume(
        id=vol.identity,
        name=vol.name or "",
        raid_level=vol.raid_type.value if vol.raid_type else "",
        capacity_bytes=vol.capacity_bytes,
        drives=drives,
    )


def _apply_time(volumes):
    """OnReset when the BMC says it cannot build a volume at once (many PERC and iLO controllers), else None:
    the service's own default."""
    support = volumes.operation_apply_time_support
    values = set(support.supported_values or ()) if support else set()
    if values and sushy.ApplyTime.IMMEDIATE.value not in values and sushy.ApplyTime.ON_RESET.value in values:
        return sushy.ApplyTime.ON_RESET
    return None
