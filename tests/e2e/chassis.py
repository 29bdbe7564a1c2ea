"""ipmi_sim's chassis-control program for the end-to-end VM: the BMC's power and boot device drive QEMU.

ipmi_sim runs `chassis <state dir> <mc> get power boot` and `... set power 1`, `set reset 1`, `set boot pxe`.
Power is whether the QEMU process lives; "on" starts QEMU with network boot first when the boot device is pxe
(consumed at that power-on, as a real BMC's one-time override is) and with the disk first otherwise; "reset"
does a monitor `system_reset` when the boot order QEMU runs with is still the wanted one, else restarts QEMU
(starting QEMU happens in a detached child, after ipmi_sim has its answer);
"off" is the monitor's `quit`. Every action is appended to events.log with its time, for the test's timeline.

The machine has one NIC that network-boots (config "mac") and, with config "extra_macs", more NICs on the same
network that do not. It has one or more disks (config "disks": name, image file, serial), each in a slot of its
own; config "attached" names those plugged in at the next power-on (all when absent), so a test can pull a disk
out of a RAID 1 pair, the others keeping their slots, as a technician would. QEMU runs under KVM when config
"accel" says so.

Standard library only: ipmi_sim runs it with the test's interpreter but none of its imports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _log(state: Path, text: str) -> None:
    with (state / "events.log").open("a") as f:
        f.write(f"{time.time():.3f} {text}\n")


def _pid(state: Path) -> int | None:
    try:
        pid = int((state / "qemu.pid").read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    # A reused pid would belong to something else; QEMU's own cmdline names the VM.
    try:
        if b"e2e-vm" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
    except FileNotFoundError:
        return None
    return pid


def _monitor(state: Path, command: str, timeout: float = 5) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(state / "monitor.sock"))
        sock.recv(4096)  # the banner and prompt
        sock.sendall(command.encode() + b"\n")
        try:
            sock.recv(4096)
        except (TimeoutError, ConnectionResetError):
            pass


def _wanted_mode(state: Path) -> str:
    boot = (state / "boot").read_text().strip() if (state / "boot").exists() else "default"
    return "network" if boot == "pxe" else "disk"


def qemu_argv(config: dict, mode: str) -> list[str]:
    net_first = mode == "network"
    uefi = config["firmware"] == "uefi"
    accel = config.get("accel", "tcg")
    attached = set(config.get("attached") or [disk["name"] for disk in config["disks"]])
    plugged = [(slot, disk) for slot, disk in enumerate(config["disks"]) if disk["name"] in attached]
    # Boot order: the NIC first for a network boot, else the disks in slot order and the NIC after them.
    nic_index = 1 if net_first else len(plugged) + 1
    argv = [
        "qemu-system-x86_64",
        "-name", "e2e-vm",
        "-machine", f"q35,accel={accel}" if uefi else f"pc,accel={accel}",
        "-m", str(config.get("memory_mib", 1024)),
        "-smp", "1",
        "-nodefaults", "-display", "none",
        "-daemonize", "-pidfile", config["pidfile"],
        "-chardev", f"file,id=ser0,path={config['serial']},append=on", "-serial", "chardev:ser0",
        "-monitor", f"unix:{config['monitor']},server=on,wait=off",
        "-netdev", f"user,id=n0,tftp={config['tftp_root']},bootfile={config['bootfile']}",
    ]  # fmt: skip
    argv += _nics(config, nic_index)
    for order, (slot, disk) in enumerate(plugged, start=2 if net_first else 1):
        # One disk per IDE channel (the pc machine has two, q35's AHCI six), the master of each: a disk keeps its
        # channel when another is pulled, and the serial is what the installed OS reports it booted from.
        argv += [
            "-drive", f"file={disk['file']},if=none,id=d{slot},format=qcow2",
            "-device", f"ide-hd,drive=d{slot},bus=ide.{slot},serial={disk['serial']},bootindex={order}",
        ]  # fmt: skip
    if uefi:
        argv += [
            "-drive", f"if=pflash,format=raw,readonly=on,file={config['ovmf_code']}",
            "-drive", f"if=pflash,format=raw,file={config['ovmf_vars']}",
        ]  # fmt: skip
    else:
        # SeaBIOS copies its text console (and the iPXE ROM's DHCP and TFTP messages) to this serial port.
        argv += ["-fw_cfg", f"name=etc/sercon-port,file={config['sercon']}"]
    return argv


def _nics(config: dict, nic_index: int) -> list[str]:
    """The boot NIC, and the extra NICs of config "extra_macs" beside it on one hub: all of them on the same
    user-mode network (its DHCP answers each by MAC), the extras with no option ROM, so only the first can
    network-boot, as a server whose other ports have PXE switched off in its firmware."""
    boot = f"mac={config['mac']},bootindex={nic_index}"
    extras = config.get("extra_macs") or []
    if not extras:
        return ["-device", f"e1000,netdev=n0,{boot}"]
    argv = ["-netdev", "hubport,id=uplink,hubid=0,netdev=n0", "-netdev", "hubport,id=p0,hubid=0"]
    argv += ["-device", f"e1000,netdev=p0,{boot}"]
    for index, mac in enumerate(extras, start=1):
        argv += ["-netdev", f"hubport,id=p{index},hubid=0", "-device", f"e1000,netdev=p{index},mac={mac},romfile="]
    return argv


def power_on(state: Path, config: dict) -> None:
    mode = _wanted_mode(state)
    done = subprocess.run(qemu_argv(config, mode), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        _log(state, f"qemu-failed {done.stderr.strip()!r}")
        return
    (state / "mode").write_text(mode)
    if mode == "network":
        (state / "boot").write_text("default\n")
    disks = ""
    if config.get("attached") is not None:
        disks = " disks=" + (",".join(config["attached"]) or "none")
    _log(state, f"power-on boot={mode}{disks}")


def power_off(state: Path, pid: int) -> None:
    # ipmi_sim holds its answer until this returns and the BMC client gives up after 5 s, while a QEMU whose vCPU
    # thread is busy (TCG on a loaded machine) has been seen to take longer than that to act on `quit`: it gets two
    # seconds, then the plug is pulled, which is what a hard power off is.
    try:
        _monitor(state, "quit", timeout=1)
    except OSError:
        pass
    for _ in range(40):
        if _pid(state) is None:
            return
        time.sleep(0.05)
    _log(state, "quit took over 2 s: killed")
    os.kill(pid, signal.SIGKILL)
    for _ in range(40):
        if _pid(state) is None:
            return
        time.sleep(0.05)


def _in_background(state: Path, action: str) -> None:
    # ipmi_sim waits for this program and the BMC client gives up after a few seconds; starting QEMU (and stopping
    # it first, for a reset that changes the boot order) can take longer, so it happens after the answer.
    subprocess.Popen(
        [sys.executable, __file__, str(state), "-", "apply", action],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def main(argv: list[str]) -> int:
    state = Path(argv[1])
    config = json.loads((state / "config.json").read_text())
    op, params = argv[3], argv[4:]
    pid = _pid(state)
    if op == "apply":
        if params == ["power-on"] and pid is None:
            power_on(state, config)
        elif params == ["restart"]:
            if pid is not None:
                power_off(state, pid)
            power_on(state, config)
        return 0
    if op == "get":
        for name in params:
            if name == "power":
                print(f"power:{1 if pid else 0}")
            elif name == "boot":
                boot = (state / "boot").read_text().strip() if (state / "boot").exists() else "default"
                print(f"boot:{boot}")
        return 0
    for name, value in zip(params[::2], params[1::2], strict=False):
        _log(state, f"bmc set {name}={value}")
        if name == "boot":
            (state / "boot").write_text(f"{value}\n")
        elif name == "power" and value == "1" and pid is None:
            _in_background(state, "power-on")
        elif name == "power" and value == "0" and pid is not None:
            power_off(state, pid)
            _log(state, "power-off")
        elif name == "reset" and pid is not None:
            running = (state / "mode").read_text().strip() if (state / "mode").exists() else ""
            if running == _wanted_mode(state):
                _monitor(state, "system_reset")
                _log(state, f"reset boot={running}")
            else:
                _in_background(state, "restart")
        elif name == "shutdown" and pid is not None:
            _monitor(state, "system_powerdown")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
