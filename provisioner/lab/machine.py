"""A simulated machine: a loopback BMC, NICs, a disk, firmware, and what boots when the BMC powers it on.

Power-on from the network (boot device PXE, or DEFAULT with nothing bootable on the disk) does what a PXE ROM
does with the site's TFTP root (see :mod:`provisioner.lab.firmware`): the memory OS runs the real agent program
as a subprocess in sandbox mode in the machine's work dir (in discovery mode, ``--discover --url``, when the
site's default discovers a machine unknown to inventory); an installer command line plays the installer
(:mod:`provisioner.lab.installer`); a local-boot config boots the disk. A disk holding an installed OS runs its
first-boot unit if one is enabled (left by the agent's first_boot_callback task), and its sshd on the machine's
address (:mod:`provisioner.lab.ssh`). Power-off or reset is a power cut: whatever ran is killed at once, as a real
machine's RAM is lost, and SSH connections drop.

Work dir layout (the agent's sandbox): `disks/<name>.img`, `target/` (the installed root), `machine.json`
(NICs, DMI, disk serials and the BMC's address, for register), `ram/` (the memory OS's state, emptied at every
power-on), `lab.log` (every phase with a timestamp, tokens masked) and `agent.log` (the agent's own output).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from provisioner.bmc import BootDevice
from provisioner.lab import hardware
from provisioner.lab.bmc import LoopbackBmc
from provisioner.lab.commands import Installed, Nic
from provisioner.lab.firmware import BootKind, BootTarget, Firmware, mask_cmdline, resolve
from provisioner.lab.installer import InstallerRun, InstallFailed, Stopped, mask_url
from provisioner.lab.ssh import MachineSshd, start_sshd
from provisioner.pxe.mac import normalise_mac

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# A boot sector is "bootable" when it ends in 0x55 0xAA: what BIOS checks, and what wipe_disks zeroes.
BOOT_SIGNATURE_OFFSET = 510
BOOT_SIGNATURE = b"\x55\xaa"
OS_LABEL = b"PROVLAB-OS "
DEFAULT_DISK_BYTES = 32 << 30  # sparse: only what is written takes space
SMALL_DISK_BYTES = 1 << 20
# Every distribution installer refuses a disk this small (debian-installer's guided partitioning needs ~1 GB).
MIN_INSTALLER_DISK_BYTES = 1 << 30
FIRST_BOOT_UNIT = "etc/systemd/system/provisioner-first-boot.service"
FIRST_BOOT_WANTS = "etc/systemd/system/multi-user.target.wants/provisioner-first-boot.service"
# The unit's curl retries about five minutes; the lab retries as often, faster, then leaves the unit enabled.
FIRST_BOOT_TRIES = 30
FIRST_BOOT_RETRY_S = 1.0
# Between SIGKILL and giving up on reaping the agent: a killed process is gone at once, this is only a guard.
REAP_TIMEOUT_S = 5


# What each installer's distribution says of itself in /etc/os-release (the fields people and the SSH check read).
_OS_RELEASES = {
    "preseed": ("debian", "12", "Debian GNU/Linux 12 (bookworm)"),
    "autoinstall": ("ubuntu", "24.04", "Ubuntu 24.04 LTS"),
    "kickstart": ("rocky", "9", "Rocky Linux 9"),
    "kickstart-legacy": ("centos", "7", "CentOS Linux 7 (Core)"),
}


def _os_release(method: str, cmdline: str) -> str:
    """The installed system's /etc/os-release: by installer, CentOS 7 told from Rocky by its `ks=` (anaconda 21)."""
    if method == "kickstart" and "inst.ks=" not in cmdline:
        method = "kickstart-legacy"
    os_id, version, pretty = _OS_RELEASES.get(method, ("linux", "", "Linux"))
    return f'PRETTY_NAME="{pretty}"\nID={os_id}\nVERSION_ID="{version}"\n'


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Event:
    at: float  # time.monotonic()
    phase: str
    detail: str


class _Session:
    """Whatever runs on the machine after one boot; stopping it is a power cut."""

    def stop(self) -> None:
        raise NotImplementedError


class _ThreadSession(_Session):
    def __init__(self, name: str, work: Callable[[threading.Event], None]):
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=work, args=(self.stop_event,), name=name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=15)


class _AgentSession(_Session):
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.watcher: threading.Thread | None = None
        self.killed = False

    def stop(self) -> None:
        self.killed = True
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("agent pid %s did not die after SIGKILL", self.proc.pid)
        if self.watcher is not None and self.watcher is not threading.current_thread():
            self.watcher.join(timeout=REAP_TIMEOUT_S)


class LabMachine:
    """One simulated machine. ``start()`` brings up its BMC; the BMC's power commands drive everything else."""

    def __init__(
        self,
        hostname: str,
        macs: list[str],
        workdir: str | os.PathLike[str],
        tftp_root: str | os.PathLike[str],
        *,
        firmware: Firmware | str = Firmware.BIOS,
        bmc: LoopbackBmc | None = None,
        disk_name: str = "sda",
        disk_bytes: int = DEFAULT_DISK_BYTES,
        never_boots: bool = False,
        installer_silent: bool = False,
        install_s: float = 5.0,
        agent_argv: list[str] | None = None,
        agent_args: list[str] | None = None,
        dmi: dict | None = None,
        extra_disks: tuple[str, ...] = (),
        disk_facts: dict[str, dict] | None = None,
        bmc_facts: dict | None = None,
        switch: str = "",
        switch_port: int = 0,
        ssh_address: str = "",
        ssh_port: int = 22,
        ip_prefix: int = 8,
    ):
        if not macs:
            raise ValueError("a machine needs at least one NIC")
        self.hostname = hostname
        self.macs = [normalise_mac(m) for m in macs]
        self.pxe_mac = self.macs[0]  # the NIC first in the firmware's boot order
        self.workdir = Path(workdir)
        self.tftp_root = Path(tftp_root)
        self.firmware = Firmware(firmware)
        self.bmc = bmc or LoopbackBmc()
        self.disk_name = disk_name
        self.disk_bytes = disk_bytes
        self.never_boots = never_boots
        self.installer_silent = installer_silent
        self.install_s = install_s
        self.agent_argv = agent_argv or [sys.executable, "-m", "provisioner.agent"]
        self.agent_args = agent_args or []
        self.dmi = dmi or {"vendor": "Provisioner Lab", "product": "Simulated Server", "serial": hostname.upper()}
        # More disks beside the first (same size), what the agent reports of each (serial, model: machine.json's
        # "disks"), and what it reads from its BMC (machine.json's "bmc": address, port).
        self.extra_disks = tuple(extra_disks)
        self.disk_facts = disk_facts or {}
        self.bmc_facts = bmc_facts
        # The leaf switch and port its first NIC is cabled to, as LLDP tells commissioning (blank: none heard).
        self.switch, self.switch_port = switch, switch_port
        # The PXE NIC's address in the installed OS, where its sshd listens (blank: no SSH, as without an IP).
        self.ssh_address, self.ssh_port, self.ip_prefix = ssh_address, ssh_port, ip_prefix
        self.sshd: MachineSshd | None = None
        self.log_path = self.workdir / "lab.log"

        self.events: list[Event] = []
        self.first_boot_calls = 0
        self.installer_runs: list[InstallerRun] = []
        self.agent_exit_codes: list[int] = []
        #: The agent's argv at each start (tests check the token never appears in it).
        self.agent_commands: list[list[str]] = []
        self._changed = threading.Condition()
        self._queue: queue.Queue = queue.Queue()
        self._session: _Session | None = None
        self._generation = 0
        self._worker: threading.Thread | None = None
        self._log_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LabMachine({self.hostname}, {self.firmware}, bmc={self.bmc.address}:{self.bmc.port})"

    # -- paths ----------------------------------------------------------------------------------------------

    @property
    def disk(self) -> Path:
        return self.workdir / "disks" / f"{self.disk_name}.img"

    @property
    def target(self) -> Path:
        return self.workdir / "target"

    @property
    def ram(self) -> Path:
        return self.workdir / "ram"

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> LabMachine:
        (self.workdir / "disks").mkdir(parents=True, exist_ok=True)
        self._kill_leftover_agent()
        self._forget_ram()
        self.target.mkdir(exist_ok=True)
        for disk in (self.disk, *(self.workdir / "disks" / f"{name}.img" for name in self.extra_disks)):
            if not disk.exists() or disk.stat().st_size != self.disk_bytes:
                with open(disk, "ab") as f:
                    f.truncate(self.disk_bytes)
        machine = hardware.describe(
            self.hostname, self.macs, disk_names=[self.disk_name, *self.extra_disks], switch=self.switch,
            port=self.switch_port,
        )  # fmt: skip
        machine["dmi"] = self.dmi
        for name, declared in self.disk_facts.items():
            machine["disks"].setdefault(name, {}).update(declared)
        # What the host reads of its BMC in-band (ipmitool lan print); the lab's BMC listens on loopback.
        machine["bmc"] = self.bmc_facts or {"address": self.bmc.address, "mac": "", "source": "static"}
        (self.workdir / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
        self.bmc.users_file = self.workdir / "bmc-user.json"
        self.bmc.serial.hostname = self.hostname
        self.bmc.serial.status = self._serial_status
        self.bmc.on_power_on.append(lambda device: self._queue.put(("boot", device)))
        self.bmc.on_power_off.append(lambda: self._queue.put(("off", None)))
        self._worker = threading.Thread(target=self._work, name=f"lab-{self.hostname}", daemon=True)
        self._worker.start()
        self.bmc.start()
        self._record(
            "lab", f"machine up: BMC {self.bmc.address}:{self.bmc.port}, {self.firmware}, PXE NIC {self.pxe_mac}"
        )
        if self.bmc.powered_on:
            self._queue.put(("boot", self.bmc.boot_device))
        return self

    def stop(self) -> None:
        """Power cut and BMC gone: nothing of this machine keeps running."""
        self.bmc.stop()
        self._queue.put(("quit", None))
        if self._worker is not None:
            self._worker.join(timeout=30)
        self._end_session()
        self._forget_ram()

    def __enter__(self) -> LabMachine:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- observing ------------------------------------------------------------------------------------------

    def _record(self, phase: str, detail: str = "") -> None:
        event = Event(time.monotonic(), phase, detail)
        with self._log_lock:
            with open(self.log_path, "a") as f:
                f.write(f"{utc_now()} {self.hostname} {phase}: {detail}\n")
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        log.debug("%s %s: %s", self.hostname, phase, detail)
        if phase != "lab":
            self.bmc.serial.print_line(f"[{phase}] {detail}" if detail else f"[{phase}]")
        if phase == "disk-boot":
            self.bmc.serial.login_prompt()

    def _serial_status(self) -> str:
        """What ``status`` on the machine's serial console says: its own power and boot state."""
        bmc = self.bmc
        last = bmc.boots[-1] if bmc.boots else "none yet"
        return (
            f"{self.hostname}: power {'on' if bmc.powered_on else 'off'}, last boot from {last}, "
            f"next boot device {bmc.boot_device}, disk holds {self.installed_os() or 'no OS'}, "
            f"PXE NIC {self.pxe_mac}"
        )

    def phases(self) -> list[str]:
        with self._changed:
            return [e.phase for e in self.events]

    def wait_for(self, phase: str, timeout: float = 10.0, *, count: int = 1) -> Event:
        """Until ``phase`` has been recorded ``count`` times; raises TimeoutError with what happened instead."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.events if e.phase == phase]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = ", ".join(f"{e.phase}({e.detail})" for e in self.events[-8:])
                    raise TimeoutError(f"{self.hostname}: no {phase} #{count} within {timeout} s; last: {seen}")
                self._changed.wait(remaining)

    @property
    def agent_running(self) -> bool:
        session = self._session
        return isinstance(session, _AgentSession) and session.proc.poll() is None

    @property
    def agent_pid(self) -> int | None:
        session = self._session
        return session.proc.pid if isinstance(session, _AgentSession) else None

    def installed_os(self) -> str | None:
        """What the disk boots ("image", "preseed", ...), or None when its boot sector is not bootable."""
        try:
            with open(self.disk, "rb") as f:
                sector = f.read(512)
        except FileNotFoundError:
            return None
        if len(sector) < 512 or sector[BOOT_SIGNATURE_OFFSET:512] != BOOT_SIGNATURE:
            return None
        if sector.startswith(OS_LABEL):
            return sector[len(OS_LABEL) : sector.index(b"\n")].decode(errors="replace") or "unknown"
        return "unknown"

    # -- the worker: one event at a time, in order ----------------------------------------------------------

    def _work(self) -> None:
        while True:
            kind, arg = self._queue.get()
            if kind == "quit":
                return
            try:
                self._handle(kind, arg)
            except Exception:
                log.exception("lab machine %s failed handling %s", self.hostname, kind)
                self._record("error", f"lab bug while handling {kind}; see the lab's log")

    def _handle(self, kind: str, arg) -> None:
        if kind == "boot":
            self._end_session()
            self._generation += 1
            self._boot(BootDevice(arg), self._generation)
        elif kind == "off":
            self._end_session()
            self._generation += 1
            self._forget_ram()
            self._record("power-off", "")
        elif kind == "host-reboot" and arg == self._generation:
            self._record("host-reboot", "the running OS rebooted the machine")
            self.bmc.host_reset()
        elif kind == "host-poweroff" and arg == self._generation:
            self._record("host-poweroff", "the running OS powered the machine off")
            self.bmc.host_power_off()

    def _end_session(self) -> None:
        sshd, self.sshd = self.sshd, None
        if sshd is not None:
            sshd.stop()
            self._record("sshd-stopped", "connections dropped")
        session, self._session = self._session, None
        if session is None:
            return
        running = isinstance(session, _AgentSession) and session.proc.poll() is None
        session.stop()
        if running:
            self._record("agent-stopped", f"pid {session.proc.pid} killed by the power cut")

    def _kill_leftover_agent(self) -> None:
        """An agent left running by a lab that was killed outright (SIGKILL leaves no chance to stop it)."""
        try:
            pid = int((self.ram / "agent.pid").read_text())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        # Only our own agent: the pid may have been reused by anything since.
        if b"--sandbox" in argv and str(self.workdir).encode() in argv:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                return
            self._record("agent-stopped", f"pid {pid}, left running by an earlier lab, killed")

    def _forget_ram(self) -> None:
        shutil.rmtree(self.ram, ignore_errors=True)

    def _boot(self, device: BootDevice, generation: int) -> None:
        self._forget_ram()
        installed = self.installed_os()
        self._record("power-on", f"boot device {device}; disk holds {installed or 'no OS'}")
        if self.never_boots:
            self._record("halted", "no POST: the machine hangs before its PXE ROM runs")
            return
        if device is BootDevice.PXE or (device is BootDevice.DEFAULT and installed is None):
            self._netboot(generation)
        elif device in (BootDevice.DISK, BootDevice.DEFAULT):
            self._disk_boot(generation)
        else:
            self._record("halted", f"boot device {device}: nothing this lab can boot")

    # -- network boot ---------------------------------------------------------------------------------------

    def _netboot(self, generation: int) -> None:
        self.bmc.serial.print_line(f"PXE boot from MAC {self.pxe_mac}")
        loaded, target = resolve(self.tftp_root, self.firmware, self.pxe_mac)
        missed = [name for name in loaded.asked if name != loaded.path]
        if missed:
            self._record("tftp", f"not found: {', '.join(missed)}")
        if loaded.path is None:
            self._record("tftp", "no boot config at all: the loader gives up")
        else:
            self._record("tftp", f"read {loaded.path}")
        if target.kind is BootKind.LOCAL:
            self._record("local-boot", "the boot config boots the local disk")
            self._disk_boot(generation)
            return
        self._record("kernel", f"{target.kernel} initrd={target.initrd} {mask_cmdline(target.cmdline)}")
        for path in (target.kernel, target.initrd):
            if path and not (self.tftp_root / path.lstrip("/")).is_file():
                self._record("tftp", f"{path} is not in the TFTP root; the lab boots it anyway")
        if target.kind in (BootKind.AGENT, BootKind.DISCOVER):
            self._start_agent(target, generation)
        elif target.kind in (BootKind.PRESEED, BootKind.KICKSTART, BootKind.AUTOINSTALL):
            self._start_installer(target, generation)
        else:
            self._record("halted", "a kernel command line this lab cannot play (no agent, no installer answers)")

    def _start_agent(self, target: BootTarget, generation: int) -> None:
        self.ram.mkdir(mode=0o700, exist_ok=True)
        # The memory OS's /proc/cmdline: the agent finds its URL and token there, as on a real machine.
        cmdline = self.ram / "cmdline"
        fd = os.open(cmdline, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(target.cmdline + "\n")
        for stale in ("reboot-requested", "poweroff-requested"):
            (self.workdir / stale).unlink(missing_ok=True)
        # Discovery mode has no token: the agent registers the machine at the URL (docs/agent-api.md, Discovery).
        discover = ["--discover", "--url", target.args["provisioner.url"]] if target.kind is BootKind.DISCOVER else []
        argv = [
            *self.agent_argv,
            "--sandbox", str(self.workdir),
            "--cmdline", str(cmdline),
            "--state-dir", str(self.ram / "state"),
            *discover,
            *self.agent_args,
        ]  # fmt: skip
        self.agent_commands.append(argv)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVISIONER_", "DJANGO_", "DATABASE_"))}
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.workdir / "agent.log", "ab") as out:
            out.write(f"--- {utc_now()} memory OS booted ---\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        (self.ram / "agent.pid").write_text(f"{proc.pid}\n")
        session = _AgentSession(proc)
        session.watcher = threading.Thread(
            target=self._watch_agent, args=(session, generation), name=f"lab-agent-{self.hostname}", daemon=True
        )
        self._session = session
        self._record("agent-started", f"pid {proc.pid}")
        session.watcher.start()

    def _watch_agent(self, session: _AgentSession, generation: int) -> None:
        code = session.proc.wait()
        if session.killed or generation != self._generation:
            return  # a power cut, already recorded
        self.agent_exit_codes.append(code)
        self._record("agent-exited", f"exit status {code}")
        # The sandbox records reboot and poweroff instead of doing them: the lab does them.
        if (self.workdir / "reboot-requested").exists():
            self._queue.put(("host-reboot", generation))
        elif (self.workdir / "poweroff-requested").exists():
            self._queue.put(("host-poweroff", generation))

    def _start_installer(self, target: BootTarget, generation: int) -> None:
        run = InstallerRun(
            target,
            log=lambda line: self._record("installer", line),
            on_installed=lambda method: self._write_installed_os(method, target),
            install_s=self.install_s,
            check_disk=self._check_disk,
            silent=self.installer_silent,
            append_target=self._append_target,
        )
        self.installer_runs.append(run)

        def work(stop: threading.Event) -> None:
            run.stop = stop
            try:
                finished = run.run()
            except Stopped:
                self._record("installer-stopped", "power cut while installing")
                return
            except Exception as exc:
                self._record("installer-error", f"{type(exc).__name__}: {exc}")
                return
            if finished:
                self._queue.put(("host-reboot", generation))

        self._record("installer-started", f"{target.kind} answers from {mask_url(target.answer_url)}")
        self._session = _ThreadSession(f"lab-installer-{self.hostname}", work)

    def _append_target(self, path: str, text: str) -> None:
        if not self.installed().append(path, text):
            self._record("installer", f"refused to write outside the installed root: {path}")

    def _check_disk(self) -> None:
        size = self.disk.stat().st_size
        if size < MIN_INSTALLER_DISK_BYTES:
            raise InstallFailed(f"/dev/{self.disk_name} has {size} bytes, too small to install on")

    def _write_installed_os(self, method: str, target: BootTarget | None = None) -> None:
        """What the installer leaves: a bootable disk and a fresh root (the old one is gone with the partitions)."""
        sector = bytearray(512)
        label = OS_LABEL + method.encode() + b"\n"
        sector[: len(label)] = label
        sector[BOOT_SIGNATURE_OFFSET:512] = BOOT_SIGNATURE
        with open(self.disk, "r+b") as f:
            f.write(sector)
        shutil.rmtree(self.target, ignore_errors=True)
        (self.target / "etc").mkdir(parents=True)
        (self.target / "etc" / "hostname").write_text(self.hostname + "\n")
        (self.target / "etc" / "os-release").write_text(_os_release(method, target.cmdline if target else ""))
        self._record("os-installed", f"{method} wrote the disk")

    # -- disk boot ------------------------------------------------------------------------------------------

    def _disk_boot(self, generation: int) -> None:
        installed = self.installed_os()
        if installed is None:
            self._record("halted", "no bootable disk: the firmware stops at 'no boot device'")
            return
        self.bmc.serial.print_line("booting from disk")
        self._record("disk-boot", f"installed OS ({installed}) booted")
        if self.ssh_address:
            self._start_sshd()
        unit = self.target / FIRST_BOOT_UNIT
        wants = self.target / FIRST_BOOT_WANTS
        if not (unit.is_file() and wants.is_symlink()):
            return
        env_file = self._first_boot_env_file(unit)
        if env_file is None:
            return
        self._session = _ThreadSession(
            f"lab-first-boot-{self.hostname}", lambda stop: self._first_boot(stop, env_file, wants)
        )

    def installed(self) -> Installed:
        """The installed OS as its shell sees it: the root, the NICs (the first has the link and the address)."""
        nics = [
            Nic(f"eno{i + 1}", mac, link=i == 0, ip=self.ssh_address if i == 0 else "", prefix=self.ip_prefix)
            for i, mac in enumerate(self.macs)
        ]
        return Installed(self.target, "localhost", nics, disk=self.disk_name, disk_bytes=self.disk_bytes)

    def _start_sshd(self) -> None:
        try:
            self.sshd, new_key = start_sshd(self.installed(), self.ssh_address, self.ssh_port, disk=self.disk)
        except OSError as exc:
            self._record("sshd-failed", f"cannot listen on {self.ssh_address}:{self.ssh_port}: {exc.strerror}")
            return
        if new_key:
            self._record("ssh-keygen", f"new host key {new_key}")
        self._record("sshd", f"listening on {self.ssh_address}:{self.ssh_port}")

    def _first_boot_env_file(self, unit: Path) -> Path | None:
        for line in unit.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "EnvironmentFile":
                path = self.target / value.strip().lstrip("-").lstrip("/")
                # ConditionPathExists: the unit does nothing without its file.
                return path if path.is_file() else None
        return None

    def _first_boot(self, stop: threading.Event, env_file: Path, wants: Path) -> None:
        env = {}
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                env[key.strip()] = value.strip().strip('"')
        url = env.get("PROVISIONER_FIRST_BOOT_URL", "")
        if not url:
            self._record("first-boot-failed", "the unit's environment file has no URL")
            return
        self._record("first-boot", f"POST {mask_url(url)}")
        for attempt in range(1, FIRST_BOOT_TRIES + 1):
            request = urllib.request.Request(url, data=b"step=first-boot", method="POST")
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
            request.add_header("User-Agent", "curl/7.88.1")
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
                if status < 500 and status not in (408, 429):
                    # curl -f fails and does not retry a 4xx: the unit fails and stays enabled for the next boot.
                    self._record("first-boot-failed", f"HTTP {status}; the unit stays enabled")
                    return
            except (urllib.error.URLError, OSError) as exc:
                status = 0
                self._record("first-boot-retry", f"attempt {attempt}: {getattr(exc, 'reason', exc)}")
            if 200 <= status < 300:
                # ExecStartPost: systemctl disable, rm the file that holds the token.
                wants.unlink(missing_ok=True)
                env_file.unlink(missing_ok=True)
                self.first_boot_calls += 1
                self._record("first-boot-callback", f"HTTP {status}; unit disabled")
                return
            if stop.wait(FIRST_BOOT_RETRY_S):
                return
        self._record("first-boot-failed", "gave up; the unit stays enabled for the next boot")
