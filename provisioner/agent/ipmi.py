"""The BMC seen from inside the machine, through ipmitool's in-band interface (the kernel's /dev/ipmi0).

In-band needs no BMC credentials: the host OS is trusted by the BMC. That is how commissioning reads the BMC's
address and MAC, and how create_bmc_user gives the control plane a user of its own.

Every call goes through `run(argv, timeout)` with argv after `ipmitool`, so the same code drives a BMC over
the LAN interface in the tests (`prefix`), against OpenIPMI's simulator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from provisioner.agent import parsers
from provisioner.agent.results import TaskFailed
from provisioner.agent.tools import Completed

# ipmitool itself looks for the LAN channel among 1..11 when `lan print` is given none; it does not say which
# one it found, and create_bmc_user needs the number.
LAN_CHANNELS = range(1, 12)
# The kernel creates the device node once ipmi_si has talked to the BMC (KCS probing takes a few seconds on
# some Dell and HPE machines).
DEVICE_NODES = ("ipmi0", "ipmi/0", "ipmidev/0")
DEVICE_WAIT_S = 10
CALL_TIMEOUT_S = 60

Runner = Callable[..., Completed]


class NoBmc(Exception):
    """No BMC answers in-band; the message says what was tried, for a technician."""


class Ipmitool:
    def __init__(self, run: Runner, prefix: tuple[str, ...] = ("ipmitool",)):
        self._run = run
        self.prefix = prefix

    def call(self, *args: str, input: str | None = None) -> Completed:
        argv = [*self.prefix, *args]
        if input is None:
            return self._run(argv, CALL_TIMEOUT_S)
        return self._run(argv, CALL_TIMEOUT_S, input=input, new_session=True)

    def lan(self) -> tuple[int, dict]:
        """The first LAN channel and what `lan print` says of it: {"address", "mac", "source"}."""
        last = ""
        for channel in LAN_CHANNELS:
            done = self.call("lan", "print", str(channel))
            if done.returncode == 0 and "MAC Address" in done.output:
                return channel, parsers.ipmi_lan(done.output)
            last = done.output.strip().splitlines()[-1] if done.output.strip() else f"exit status {done.returncode}"
            if channel == LAN_CHANNELS[0] and "Could not open device" in done.output:
                break  # no in-band interface at all: the other channels will not answer either
        raise NoBmc(f"ipmitool found no LAN channel on the BMC ({last})")

    def users(self, channel: int) -> list[tuple[int, str, str]]:
        done = self.call("user", "list", str(channel))
        if done.returncode != 0:
            raise TaskFailed("BmcUserFailed", f"ipmitool user list {channel} failed: {done.output.strip()}")
        return parsers.ipmi_users(done.output)


def load_driver(run: Runner, dev_root: Path = Path("/dev"), wait_s: float = DEVICE_WAIT_S) -> None:
    """Load the kernel's IPMI drivers and wait for the device node; NoBmc when none appears.

    A machine without a BMC makes ipmi_si fail with "No such device": that is the answer, not an error."""
    if any((dev_root / node).exists() for node in DEVICE_NODES):
        return
    try:
        done = run(["modprobe", "-a", "-q", "ipmi_si", "ipmi_devintf"], CALL_TIMEOUT_S)
        loaded = done.returncode == 0
        why = f"modprobe ipmi_si exit status {done.returncode}" + (f": {done.output.strip()}" if done.output else "")
    except TaskFailed as exc:
        loaded, why = False, exc.message
    deadline = time.monotonic() + (wait_s if loaded else 0)
    while True:
        if any((dev_root / node).exists() for node in DEVICE_NODES):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if loaded:
        raise NoBmc(f"no BMC answers in-band (no {dev_root}/ipmi0 {wait_s:g} s after loading ipmi_si)")
    raise NoBmc(f"no BMC answers in-band (ipmi_si found none: {why})")
