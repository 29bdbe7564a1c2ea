"""Machine alerts raised by inventory (a BMC that stops answering, power changed outside provisioner, critical
event log entries). Alerts and their e-mail are the installs app's (installs/alerts.py), which inventory may
not import: installs registers its function here when it starts (InstallsConfig.ready)."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# Reasons, CamelCase like install failure reasons; one open alert per machine and reason.
BMC_UNREACHABLE = "BmcUnreachable"
POWER_CHANGED = "PowerChangedOutside"
SEL_CRITICAL = "EventLogCritical"

#: Called with (machine_id, reason, message); installs.alerts.raise_machine_alert.
SINKS: list[Callable[[int, str, str], object]] = []


def alert(machine_id: int, reason: str, message: str) -> None:
    if not SINKS:
        log.warning("machine alert with nowhere to go (installs not loaded): %s %s", reason, message)
    for sink in SINKS:
        sink(machine_id, reason, message)
