"""BMC hygiene across every worker process: one command in flight per BMC, and a pause between commands.

Many BMCs misbehave when hammered: sessions run out, the web UI dies, some reboot themselves. The guard
holds a Redis lock per BMC while a command runs and, once it is done, leaves a cool-down key that expires
after ``min_interval_s``; the next command to that BMC (from any process) waits for both.

Waiting is bounded by ``max_wait_s``: past it the call fails with :class:`BmcBusy` (retryable), so a job
can reschedule itself instead of sleeping. Use ``max_wait_s=0`` to never wait.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

from .base import BmcDriver, BootDevice, PowerState, StorageController, VolumeRequest, VolumeResult
from .errors import BmcBusy
from .health import HEALTH_BUDGET_S, LogEntry, SensorReading
from .media import Media

DEFAULT_KEY_PREFIX = "provisioner:bmc:"
#: How often a waiting caller looks at the lock again.
POLL_S = 0.01
# A guarded call makes at most this many BMC round trips (power cycle: status, then reset or power on;
# Redfish reset fallback: status, restart, off, on), so the lock outlives a live holder.
_CALLS_PER_COMMAND = 4
# Reading storage or creating a volume walks the Redfish tree: the system, each storage subsystem, its
# volumes (and, for a listing, its drives), then the POST and the new volume read back. Virtual media walks the
# system, its managers and their media devices, and some BMCs fetch the ISO inside the insert request.
_CALLS_PER_STORAGE_COMMAND = 24

#: Told of each command once the BMC answered (or did not): the command, its seconds, the error if any.
Observer = Callable[[str, float, BaseException | None], None]

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
if tonumber(ARGV[2]) > 0 then redis.call('set', KEYS[2], '1', 'PX', ARGV[2]) end
return 1
"""


class GuardedDriver:
    """Wraps any driver; same interface, with the lock and interval applied to every call."""

    def __init__(
        self,
        driver: BmcDriver,
        redis,
        *,
        min_interval_s: float,
        max_wait_s: float = 10.0,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        lock_ttl_s: float | None = None,
        observe: Observer | None = None,
    ):
        self.driver = driver
        self._observe = observe
        self.target = driver.target
        self.min_interval_s = min_interval_s
        self.max_wait_s = max_wait_s
        self._redis = redis
        endpoint = self.target.endpoint
        self._lock_key = f"{key_prefix}lock:{endpoint}"
        self._cooldown_key = f"{key_prefix}cooldown:{endpoint}"
        # A crashed holder must not wedge the BMC forever: the lock expires after the longest legal command.
        ttl = lock_ttl_s if lock_ttl_s is not None else self.target.timeout_s * _CALLS_PER_COMMAND + 1.0
        self._lock_ttl_ms = max(1, int(ttl * 1000))
        ttl = lock_ttl_s if lock_ttl_s is not None else self.target.timeout_s * _CALLS_PER_STORAGE_COMMAND + 1.0
        self._storage_lock_ttl_ms = max(1, int(ttl * 1000))
        # Sensors and the event log: many short round trips under the driver's own overall budget.
        ttl = lock_ttl_s if lock_ttl_s is not None else HEALTH_BUDGET_S + self.target.timeout_s + 1.0
        self._health_lock_ttl_ms = max(1, int(ttl * 1000))
        self._release = redis.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"GuardedDriver({self.driver!r}, min_interval_s={self.min_interval_s:g})"

    def _acquire(self, lock_ttl_ms: int) -> str:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.max_wait_s
        while not self._redis.set(self._lock_key, token, nx=True, px=lock_ttl_ms):
            if time.monotonic() + POLL_S > deadline:
                # No retry hint: the lock's expiry is the worst case for a live holder, not an estimate.
                raise BmcBusy(self.target.endpoint, "another command to this BMC is still running")
            time.sleep(POLL_S * (0.5 + random.random()))
        cooldown_ms = self._redis.pttl(self._cooldown_key)
        if cooldown_ms and cooldown_ms > 0:
            wait_s = cooldown_ms / 1000
            if time.monotonic() + wait_s > deadline:
                self._release(keys=[self._lock_key, self._cooldown_key], args=[token, 0])
                detail = f"commands to this BMC are spaced {self.min_interval_s:g} s apart"
                raise BmcBusy(self.target.endpoint, detail, wait_s)
            time.sleep(wait_s)
        return token

    def _guarded(self, method: str, *args, _storage: bool = False, _slow: bool = False, **kwargs):
        ttl_ms = self._storage_lock_ttl_ms if _storage else self._health_lock_ttl_ms if _slow else self._lock_ttl_ms
        token = self._acquire(ttl_ms)
        started, error = time.monotonic(), None
        try:
            return getattr(self.driver, method)(*args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            took_s = time.monotonic() - started  # the BMC's time alone, not the wait for the lock
            interval_ms = int(self.min_interval_s * 1000)
            self._release(keys=[self._lock_key, self._cooldown_key], args=[token, interval_ms])
            if self._observe is not None:
                self._observe(method, took_s, error)

    def power_state(self) -> PowerState:
        return self._guarded("power_state")

    def power_on(self) -> None:
        self._guarded("power_on")

    def power_off(self, soft: bool = False) -> None:
        self._guarded("power_off", soft=soft)

    def power_cycle(self) -> None:
        self._guarded("power_cycle")

    def set_boot_device(self, device: BootDevice, once: bool = True, uefi: bool | None = None) -> None:
        self._guarded("set_boot_device", device, once=once, uefi=uefi)

    def get_boot_device(self) -> BootDevice:
        return self._guarded("get_boot_device")

    def ping(self) -> float:
        return self._guarded("ping")

    def storage(self) -> list[StorageController]:
        return self._guarded("storage", _storage=True)

    def create_volume(self, request: VolumeRequest) -> VolumeResult:
        return self._guarded("create_volume", request, _storage=True)

    def media(self) -> Media:
        return self._guarded("media", _storage=True)

    def insert_media(self, url: str) -> None:
        self._guarded("insert_media", url, _storage=True)

    def eject_media(self) -> bool:
        return self._guarded("eject_media", _storage=True)

    def sensors(self) -> list[SensorReading]:
        return self._guarded("sensors", _slow=True)

    def events(self) -> list[LogEntry]:
        return self._guarded("events", _slow=True)

    def clear_events(self) -> int:
        return self._guarded("clear_events", _slow=True)

    def console(self, label: str = ""):
        # Not guarded: a console is one long session of its own (SOL has its own session slot), not a command,
        # and holding the command lock for its lifetime would stop power actions while someone watches.
        return self.driver.console(label)


class BulkGuard:
    """The guard's lock and cool-down for many BMCs at once, in two Redis round trips: for a sweep that
    reads a whole site in one go. Same keys as :class:`GuardedDriver`, so a sweep and a technician's command
    never have two commands in flight to one BMC; a BMC whose lock is held is left out of this sweep (its
    holder is talking to it now) rather than waited for.
    """

    def __init__(self, redis, *, min_interval_s: float, lock_ttl_s: float, key_prefix: str = DEFAULT_KEY_PREFIX):
        self._redis = redis
        self._prefix = key_prefix
        self.min_interval_s = min_interval_s
        self._lock_ttl_ms = max(1, int(lock_ttl_s * 1000))
        self._release = redis.register_script(_RELEASE)

    def acquire(self, endpoints: list[str]) -> tuple[dict[str, str], float]:
        """Lock what is free: returns {endpoint: token} and the longest cool-down (seconds) still running on
        one of them, which the caller waits out before its first command."""
        tokens = {endpoint: uuid.uuid4().hex for endpoint in endpoints}
        pipe = self._redis.pipeline(transaction=False)
        for endpoint, token in tokens.items():
            pipe.set(f"{self._prefix}lock:{endpoint}", token, nx=True, px=self._lock_ttl_ms)
            pipe.pttl(f"{self._prefix}cooldown:{endpoint}")
        replies = pipe.execute()
        held, cooldown_ms = {}, 0
        for index, (endpoint, token) in enumerate(tokens.items()):
            if replies[2 * index]:
                held[endpoint] = token
                cooldown_ms = max(cooldown_ms, replies[2 * index + 1] or 0)
        return held, cooldown_ms / 1000

    def release(self, held: dict[str, str]) -> None:
        """Unlock and start each BMC's cool-down, as GuardedDriver does after every command."""
        interval_ms = int(self.min_interval_s * 1000)
        pipe = self._redis.pipeline(transaction=False)
        for endpoint, token in held.items():
            self._release(
                keys=[f"{self._prefix}lock:{endpoint}", f"{self._prefix}cooldown:{endpoint}"],
                args=[token, interval_ms],
                client=pipe,
            )
        pipe.execute()
