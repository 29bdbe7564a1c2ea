"""Serial-over-LAN on a lab machine's BMC: the project's console (the one the browser's serial console uses)
and ``ipmitool sol activate`` both reach the machine's serial port, see its login prompt and boot lines, and
one holds SOL at a time."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import time
import tty

import pytest

from provisioner.bmc import BmcBusy, BootDevice
from provisioner.bmc.serial import IpmiSerialConsole
from tests.integration.lab.conftest import BMC_PASSWORD, BMC_USER, MACS, driver


async def read_until(console, needle: bytes, seen: bytes = b"", timeout: float = 15) -> bytes:
    deadline = asyncio.get_running_loop().time() + timeout
    while needle not in seen:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"{needle!r} never came out of the console; got {seen!r}"
        chunk = await asyncio.wait_for(console.read(), remaining)
        assert chunk, f"the console ended before {needle!r}: {console.ended}"
        seen += chunk
    return seen


class IpmitoolSol:
    """``ipmitool -I lanplus sol activate`` on a pty, as a technician runs it (password via -E, not argv)."""

    def __init__(self, port: int):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            tty.setraw(0)  # raw from the start, so an early "\r" is not turned into "\n"
            os.environ["IPMI_PASSWORD"] = BMC_PASSWORD
            argv = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port), "-U", BMC_USER, "-E"]
            os.execvp("ipmitool", [*argv, "sol", "activate"])
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            assert time.monotonic() < deadline, f"ipmitool never printed {needle!r}: {self.output!r}"
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                self.output += os.read(self.fd, 4096)
        return self.output

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        self.write(b"\r~.")  # ipmitool's escape: deactivate SOL and exit
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_console_shows_the_boot_and_a_shell_that_knows_the_machine(make_machine):
    machine = make_machine()
    bmc = driver(machine)
    console = bmc.console()
    assert isinstance(console, IpmiSerialConsole)

    async def scenario():
        await console.start()
        try:
            # Watching the console while the machine powers on: the firmware's lines come out.
            await asyncio.to_thread(bmc.set_boot_device, BootDevice.PXE, once=True)
            await asyncio.to_thread(bmc.power_on)
            seen = await read_until(console, f"PXE boot from MAC {MACS[0]}".encode())
            seen = await read_until(console, b"[halted]", seen)
            await console.write(b"\r")
            await read_until(console, b"lab01 login: ")
            await console.write(b"root\r")
            await read_until(console, b"Password: ")
            await console.write(b"secret\r")
            seen = await read_until(console, b"root@lab01:~# ")
            assert b"secret" not in seen  # a password is not echoed
            machine.bmc.drop_next = 1  # the keystrokes' first packet is lost: the console sends it again
            await console.write(b"hostname\r")
            seen = await read_until(console, b"hostname\r\nlab01\r\n")
            await console.write(b"status\r")
            seen = await read_until(console, b"disk holds no OS", seen)
            assert b"lab01: power on, last boot from pxe" in seen
        finally:
            await console.close()

    asyncio.run(scenario())
    assert not machine.bmc.sol.active  # closing the console deactivated SOL
    assert (6, 0x48, 1) in machine.bmc.commands and (6, 0x49, 1) in machine.bmc.commands


def test_ipmitool_sees_the_same_prompt_and_holds_sol_alone(make_machine):
    machine = make_machine()
    driver(machine).power_on()
    machine.wait_for("halted")
    sol = IpmitoolSol(machine.bmc.port)
    try:
        sol.read_until(b"SOL Session operational")
        sol.read_until(b"lab01 login: ")  # shown as SOL comes up
        sol.write(b"root\r")
        sol.read_until(b"Password: ")
        sol.write(b"pw\r")
        sol.read_until(b"root@lab01:~# ")
        sol.write(b"hostname\r")
        sol.read_until(b"hostname\r\nlab01\r\n")

        console = driver(machine).console()

        async def refused():
            with pytest.raises(BmcBusy):
                await console.start()

        asyncio.run(refused())
    finally:
        sol.close()
    assert not machine.bmc.sol.active


def test_a_machine_that_is_off_says_nothing(make_machine):
    machine = make_machine()
    console = driver(machine).console()

    async def scenario():
        await console.start()
        try:
            await console.write(b"hostname\r")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(console.read(), 1.5)
        finally:
            await console.close()

    asyncio.run(scenario())
