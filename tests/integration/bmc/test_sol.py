"""Serial-over-LAN against ipmi_sim, whose SOL is wired to a TCP "serial port" the test plays: the driver's
console (provisioner.bmc.serial) carries bytes both ways, and ipmitool's ``sol activate`` on the same simulator
does too, so the simulator is known to be a fair judge."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import time
import tty

import pytest

from provisioner.bmc import BmcAuthError, BmcBusy, get_driver
from provisioner.bmc.serial import IpmiSerialConsole

from .conftest import IPMI_PASSWORD, IPMI_USER


async def read_until(console, needle: bytes, timeout: float = 10) -> bytes:
    seen = b""
    deadline = asyncio.get_running_loop().time() + timeout
    while needle not in seen:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"{needle!r} never came out of the console; got {seen!r}"
        chunk = await asyncio.wait_for(console.read(), remaining)
        assert chunk, f"the console ended before {needle!r}: {console.ended}"
        seen += chunk
    return seen


class IpmitoolSol:
    """``ipmitool sol activate`` on a pty, as a technician runs it."""

    def __init__(self, port: int):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: ipmitool, password through the environment (-E), never argv
            # Raw from the start: ipmitool makes its terminal raw only once SOL is up, and until then the line
            # discipline would turn a "\r" typed early into "\n".
            tty.setraw(0)
            os.environ["IPMI_PASSWORD"] = IPMI_PASSWORD
            argv = ["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(port), "-U", IPMI_USER]
            os.execvp("ipmitool", [*argv, "-E", "sol", "activate"])
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
        # ipmitool's escape: "~." at the start of a line deactivates SOL and exits.
        self.write(b"\r~.")
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


def test_ipmitool_sol_carries_bytes_both_ways(sol_sim):
    sol = IpmitoolSol(sol_sim.port)
    try:
        sol.read_until(b"SOL Session operational")
        sol.write(b"typed-by-ipmitool\r")
        sol_sim.serial.wait_for(b"typed-by-ipmitool\r")
        sol.read_until(b"typed-by-ipmitool")  # the serial port echoed it back over SOL
        sol_sim.serial.send(b"from-the-machine\r\n")
        sol.read_until(b"from-the-machine")
    finally:
        sol.close()


def test_console_carries_bytes_both_ways(sol_sim):
    console = get_driver("ipmi", sol_sim.target()).console()
    assert isinstance(console, IpmiSerialConsole)

    async def scenario():
        await console.start()
        try:
            await console.write(b"typed-in-the-browser\r")
            await asyncio.to_thread(sol_sim.serial.wait_for, b"typed-in-the-browser\r")
            await read_until(console, b"typed-in-the-browser")  # echoed by the serial port
            await asyncio.to_thread(sol_sim.serial.send, "héllo from ttyS0\r\n".encode())
            await read_until(console, "héllo from ttyS0".encode())
        finally:
            await console.close()
        assert await console.read() == b""

    asyncio.run(scenario())
    # Closing deactivated SOL: ipmitool can activate it at once.
    sol = IpmitoolSol(sol_sim.port)
    try:
        sol.read_until(b"SOL Session operational")
    finally:
        sol.close()


def test_console_refuses_when_ipmitool_holds_sol(sol_sim):
    sol = IpmitoolSol(sol_sim.port)
    try:
        sol.read_until(b"SOL Session operational")
        console = get_driver("ipmi", sol_sim.target()).console()

        async def scenario():
            with pytest.raises(BmcBusy, match="in use by another client"):
                await console.start()

        asyncio.run(scenario())
    finally:
        sol.close()


def test_wrong_password_is_rejected_without_leaking_it(sol_sim):
    console = get_driver("ipmi", sol_sim.target(password="Wrong-pw-9Zz")).console()

    async def scenario():
        with pytest.raises(BmcAuthError) as caught:
            await console.start()
        return caught.value

    error = asyncio.run(scenario())
    assert "Wrong-pw-9Zz" not in str(error) and IPMI_PASSWORD not in str(error)
    assert "127.0.0.1" in str(error)


def test_the_password_is_not_on_the_helper_command_line(sol_sim):
    console = get_driver("ipmi", sol_sim.target()).console()

    async def scenario():
        await console.start()
        try:
            argv = subprocess.run(
                ["ps", "-o", "args=", "-p", str(console._proc.pid)], capture_output=True, text=True
            ).stdout
            environ = open(f"/proc/{console._proc.pid}/environ", "rb").read()
        finally:
            await console.close()
        return argv, environ

    argv, environ = asyncio.run(scenario())
    assert "provisioner.bmc.sol_child" in argv
    assert IPMI_PASSWORD not in argv and IPMI_PASSWORD.encode() not in environ
