"""Reading many BMCs at once, for the periodic power sweep and the credential test of a whole site.

IPMI BMCs go through the one IPMI loop together (every request in flight at once, each with its own deadline);
other drivers through a small thread pool. Plain Python, no Django: the caller brings the targets and stores
what comes back.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import registry
from .base import BmcTarget
from .errors import BmcError

#: Drivers without a bulk read are called from this many threads: enough to hide HTTPS round trips, few
#: enough not to open a connection storm against one management network.
THREADS = 16


@dataclass(frozen=True)
class Reading:
    """What one BMC answered: a value, or the error it failed with."""

    value: object = None
    error: BmcError | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def read_power_states(items: list[tuple[str, BmcTarget]]) -> list[Reading]:
    """The power state of each (driver name, target), in order. Never raises for one BMC's failure."""
    results: list[Reading | None] = [None] * len(items)
    ipmi = [i for i, (name, _) in enumerate(items) if name == "ipmi"]
    if ipmi:
        from .ipmi import IpmiDriver  # pyghmi is loaded only where an IPMI BMC is read

        started = time.monotonic()
        states = IpmiDriver.power_states([items[i][1] for i in ipmi])
        elapsed = time.monotonic() - started
        for i, state in zip(ipmi, states, strict=True):
            results[i] = Reading(error=state, elapsed_s=elapsed) if isinstance(state, BmcError) else Reading(state)
    others = [i for i, (name, _) in enumerate(items) if name != "ipmi"]
    if others:
        with ThreadPoolExecutor(min(THREADS, len(others))) as pool:
            for i, reading in zip(others, pool.map(lambda i: _call(*items[i], "power_state"), others), strict=True):
                results[i] = reading
    return results  # type: ignore[return-value]


def check_logins(items: list[tuple[str, BmcTarget]]) -> list[Reading]:
    """One authenticated attempt per BMC (IPMI: a fresh login, one password check at most, no retry; others:
    one request), in order. The value is the round-trip time in seconds."""
    if not items:
        return []
    with ThreadPoolExecutor(min(64, len(items))) as pool:
        return list(pool.map(lambda item: _call(*item, "check_login"), items))


def _call(name: str, target: BmcTarget, method: str) -> Reading:
    started = time.monotonic()
    try:
        driver = registry.info(name).build(target)
        value = getattr(driver, method)() if hasattr(driver, method) else driver.ping()
    except BmcError as exc:
        return Reading(error=exc, elapsed_s=time.monotonic() - started)
    except Exception as exc:  # a plug-in's surprise is one BMC's failure, not the sweep's
        return Reading(error=BmcError(target.endpoint, f"{type(exc).__name__}: {exc}"), elapsed_s=0.0)
    elapsed = time.monotonic() - started
    return Reading(value if method == "power_state" else elapsed, elapsed_s=elapsed)
