"""One IPMI Serial-over-LAN session in a process of its own: ``python -m provisioner.bmc.sol_child``.

Why a child process: pyghmi's ``Console`` waits for each acknowledgement inside ``Session.wait_for_rsp``, which
serves every pyghmi session in the process. In the web process that would take packets (and run callbacks)
belonging to the IPMI loop's sessions on another thread, which the loop forbids (ipmi_loop.py). Here pyghmi has
the process to itself and runs the way its own ``pyghmicons`` runs it: an input thread calling ``send_data``,
the main thread turning pyghmi's loop.

The parent (provisioner.bmc.serial.IpmiSerialConsole) writes one JSON line with the target (the password
travels here, never on the command line or in the environment), then the console's input bytes; closing
stdin ends the session (SOL deactivated, session logged out). On stdout the child writes frames: one kind
byte, a 4-byte big-endian length, the payload:

    r  ready: SOL is active
    d  bytes from the machine's serial port
    i  a notice from the BMC (UTF-8), e.g. the machine powered off
    e  the session failed or ended: JSON {"reason": <BmcError reason>, "detail": <text>}; the child exits
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time

from pyghmi.ipmi import console as pyghmi_console
from pyghmi.ipmi.private.constants import ipmi_completion_codes

from provisioner.bmc.ipmi_loop import classify_login_error

FRAME = struct.Struct(">cI")
#: Longest wait for SOL to come up; the parent applies its own deadline too.
CONNECT_S = 15.0

_out_lock = threading.Lock()


def write_frame(kind: bytes, payload: bytes) -> None:
    with _out_lock:
        os.write(1, FRAME.pack(kind, len(payload)) + payload)


def fail(reason: str, detail: str) -> None:
    write_frame(b"e", json.dumps({"reason": reason, "detail": detail}).encode())
    os._exit(1)


def classify(text: str, username: str) -> tuple[str, str]:
    """Our error taxonomy (provisioner.bmc.errors) for pyghmi's SOL error strings: (reason, detail)."""
    lowered = text.lower()
    if "active for another client" in lowered or "maximum sol session" in lowered:
        return "BmcBusy", text
    if "sol is disabled" in lowered or "encryption" in lowered:
        return "BmcUnsupported", text
    # A completion code in answer to "activate payload": the BMC has no SOL (or not for this account).
    if text in ipmi_completion_codes.values():
        return "BmcUnsupported", f"the BMC refused to activate serial-over-LAN ({text})"
    error = classify_login_error("", username, text)
    return error.reason, error.detail


def read_config() -> dict:
    # Byte by byte, unbuffered: what follows the line is keystrokes, read with os.read by the input thread.
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            break
        line += byte
    return json.loads(line)


def main() -> int:
    config = read_config()

    def on_output(data):
        if isinstance(data, dict):
            if "error" in data:
                fail(*classify(str(data["error"]), config["username"]))
            elif "info" in data:
                write_frame(b"i", str(data["info"]).encode())
            return
        write_frame(b"d", data if isinstance(data, bytes) else str(data).encode())

    try:
        sol = pyghmi_console.Console(
            bmc=config["address"],
            userid=config["username"],
            password=config["password"],
            iohandler=on_output,
            port=int(config["port"]),
        )
    except Exception as exc:  # pyghmi raises plain exceptions for unreachable addresses
        fail("BmcUnreachable", f"cannot start the SOL session: {exc}")
    deadline = time.monotonic() + float(config.get("timeout_s", CONNECT_S))
    while not sol.connected and not sol.broken:
        if time.monotonic() > deadline:
            fail("BmcTimeout", "SOL did not come up in time")
        pyghmi_console.Console.wait_for_rsp(0.1)
    write_frame(b"r", b"")

    def pump_input():
        while True:
            data = os.read(0, 4096)
            if not data:
                break
            sol.send_data(data)
        try:
            session = sol.ipmi_session
            sol.close()  # deactivates the SOL payload
            if session is not None:
                session.sol_handler = None
                session.logout()
        finally:
            os._exit(0)

    threading.Thread(target=pump_input, name="sol-input", daemon=True).start()
    while True:
        pyghmi_console.Console.wait_for_rsp(0.5)


if __name__ == "__main__":
    sys.exit(main())
