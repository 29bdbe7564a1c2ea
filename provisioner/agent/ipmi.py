"""The BMC seen from inside the machine, through ipmitool's in-band interface (the kernel's /dev/ipmi0).

In-band needs no BMC credentials: the host OS is trusted by the BMC. That is how commissioning reads the BMC's
address and MAC, and how create_bmc_user gives the control plane a user of its own.

Every call goes through `run(argv, timeout)` with argv after `ipmitool`, so the same code drives a BMC over
the LAN interface in the tests (`prefix`), against OpenIPMI's simulator.
"""

from __future__ import annotations

import re
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


def _modprobe(run: Runner, module: str) -> tuple[bool, str]:
    try:
        done = run(["modprobe", "-q", module], CALL_TIMEOUT_S)
    except TaskFailed as exc:
        return False, exc.message
    said = f": {done.output.strip()}" if done.output.strip() else ""
    return done.returncode == 0, f"modprobe {module} exit status {done.returncode}{said}"


def load_driver(
    run: Runner, dev_root: Path = Path("/dev"), wait_s: float = DEVICE_WAIT_S, sys_root: Path = Path("/sys")
) -> None:
    """Load the kernel's IPMI drivers and wait for the device node; NoBmc when none appears.

    ipmi_devintf makes the device node and has no hardware alias, so nothing loaded it at boot. ipmi_si (KCS, SMIC,
    BT) fails with "No such device" on a machine without such a BMC: that is the answer, not an error. A BMC on
    SMBus had ipmi_ssif loaded by the boot's coldplug."""
    if any((dev_root / node).exists() for node in DEVICE_NODES):
        return
    _modprobe(run, "ipmi_devintf")
    loaded, why = _modprobe(run, "ipmi_si")
    loaded = loaded or (sys_root / "module/ipmi_ssif").exists()
    deadline = time.monotonic() + (wait_s if loaded else 0)
    while True:
        if any((dev_root / node).exists() for node in DEVICE_NODES):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if loaded:
        raise NoBmc(f"no BMC answers in-band (no {dev_root}/ipmi0 {wait_s:g} s after loading its driver)")
    raise NoBmc(f"no BMC answers in-band (ipmi_si found none: {why})")


# -- a BMC user for the control plane ---------------------------------------------------------------------------

# IPMI user names are 16 bytes; these characters are accepted by every BMC we know of (iDRAC refuses some
# punctuation, Supermicro refuses spaces).
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,15}$")
# IPMI 2.0 stores 20-byte passwords, IPMI 1.5 16; ipmitool picks the 20-byte form for a longer one.
PASSWORD_MAX = 20
IPMI15_PASSWORD = 16
ADMINISTRATOR = "4"
# User 1 is the anonymous (null) user on every BMC: it cannot be renamed.
FIRST_NAMED_USER = 2


class UserFailed(Exception):
    """A step of creating the user failed; `output` is what ipmitool said (it never echoes the password)."""

    def __init__(self, reason: str, message: str, output: str = ""):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.output = output


def choose_slot(users: list[tuple[int, str, str]], username: str, user_id: int | None) -> int:
    """The user id to use: the one asked for (if free or already this user's), else the user already named
    `username`, else the first slot without a name. A slot holding another user is never taken: it may be the
    vendor's own administrator."""
    slots = {uid: name for uid, name, _ in users}
    if user_id is not None:
        if user_id not in slots:
            raise UserFailed("BmcUserSlotMissing", f"the BMC has no user slot {user_id} (it has 1 to {max(slots)})")
        if slots[user_id] not in ("", username):
            raise UserFailed(
                "BmcUserSlotTaken", f"user slot {user_id} holds the user {slots[user_id]!r}; choose another slot"
            )
        return user_id
    for uid in sorted(slots):
        if slots[uid] == username:
            return uid
    for uid in sorted(slots):
        if uid >= FIRST_NAMED_USER and not slots[uid]:
            return uid
    raise UserFailed("BmcUserSlotsFull", f"every user slot of the BMC ({len(slots)}) holds a user already")


def create_user(ipmitool: Ipmitool, username: str, password: str, user_id: int | None = None, log=None) -> dict:
    """Make `username` an enabled administrator with `password` on the BMC's LAN channel, idempotently.

    The password goes to ipmitool on its standard input (`user set password <id>` with no password argument
    prompts for it twice): never on a command line, where `ps` shows it to everyone. ipmitool's -f and -E options
    carry the password of a LAN session, not the one being set, so they cannot serve."""
    log = log or (lambda line: None)
    channel, lan = ipmitool.lan()
    users = ipmitool.users(channel)
    slot = choose_slot(users, username, user_id)
    log(f"BMC LAN channel {channel}; user {username} goes in slot {slot}")
    if {uid: name for uid, name, _ in users}[slot] != username:
        _step(ipmitool, "set the user name", "user", "set", "name", str(slot), username)
    typed = f"{password}\n{password}\n"
    _step(ipmitool, "set the password", "user", "set", "password", str(slot), input=typed)
    access = ("callin=on", "ipmi=on", "link=on", f"privilege={ADMINISTRATOR}")
    _step(ipmitool, "grant administrator access", "channel", "setaccess", str(channel), str(slot), *access)
    _step(ipmitool, "enable the user", "user", "enable", str(slot))
    # Serial-over-LAN is how the control plane reaches the console; a BMC without SOL refuses, which is no failure.
    done = ipmitool.call("sol", "payload", "enable", str(channel), str(slot))
    if done.returncode != 0:
        log(f"serial-over-LAN not enabled for slot {slot}: {done.output.strip()}")
    _verify(ipmitool, channel, slot, username, password)
    log(f"BMC user {username} (slot {slot}) is an enabled administrator on channel {channel}")
    return {"user_id": slot, "channel": channel, "address": lan["address"], "mac": lan["mac"]}


def _step(ipmitool: Ipmitool, what: str, *args: str, input: str | None = None) -> None:
    done = ipmitool.call(*args, input=input)
    if done.returncode != 0:
        raise UserFailed("BmcUserFailed", f"the BMC refused to {what}: {_said(done.output)}", done.output)


def _said(output: str) -> str:
    # ipmitool's password prompts go to stderr with its answer; they say nothing a technician needs.
    lines = [line for line in output.replace("Password for user", "\nPassword for user").splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Password for user")]
    return lines[-1].strip() if lines else "no output"


def _verify(ipmitool: Ipmitool, channel: int, slot: int, username: str, password: str) -> None:
    """Read back what the BMC holds: the name and administrator privilege in the list, and the password with the
    BMC's own test (`user test` prompts for it, so it too travels on standard input)."""
    row = next(((name, priv) for uid, name, priv in ipmitool.users(channel) if uid == slot), ("", ""))
    if row[0] != username or row[1] != "ADMINISTRATOR":
        raise UserFailed(
            "BmcUserFailed", f"after the changes, slot {slot} reads {row[0]!r} with privilege {row[1] or 'none'}"
        )
    size = str(PASSWORD_MAX if len(password) > IPMI15_PASSWORD else IPMI15_PASSWORD)
    done = ipmitool.call("user", "test", str(slot), size, input=f"{password}\n")
    if done.returncode != 0 or "Success" not in done.output:
        raise UserFailed("BmcUserFailed", f"the BMC does not accept the new password: {_said(done.output)}")
