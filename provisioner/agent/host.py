"""The one door between task code and the machine: devices, commands, the target root, reboot.

Tasks never open a device path or run a device tool themselves; they ask the host. `RealHost` hands out the
real paths. `SandboxHost` maps `/dev/<name>` to `DIR/disks/<name>.img`, refuses every other path, refuses to
run a command that names anything under /dev, and records instead of running what needs real block devices
(mdadm, mounts, a chroot into the target) or would stop the machine (reboot, poweroff); `mdadm --detail --brief`
is answered from what the recorded `mdadm --create` made. Swapping the host is the only difference between a
sandbox run and a real one, so the same task code is exercised.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from provisioner.agent import erase, facts, ipmi, storage, tools
from provisioner.agent.results import TaskFailed
from provisioner.agent.tools import Completed

log = logging.getLogger(__name__)

# `/dev/sda`, `/dev/nvme0n1`, `/dev/md0`, `/dev/sda1`: one plain name under /dev, nothing that could climb out.
_DEVICE_NAME = re.compile(r"^/dev/([A-Za-z0-9][A-Za-z0-9_.-]*)$")
# Sandbox arrays get a UUID derived from their members, as stable as a real array's across agent restarts.
_SANDBOX_ARRAYS = uuid.UUID("1d7c3f0e-5b8a-4e29-9c61-0a4f2b7e8d35")
# The slot and LAN channel a sandbox BMC user gets unless asked for another: user 2 is the vendor's administrator
# on most BMCs, and channel 1 is the LAN channel of Dell, Supermicro and Lenovo BMCs.
SANDBOX_BMC_USER_ID = 3
SANDBOX_BMC_CHANNEL = 1


class SandboxViolation(Exception):
    """Sandbox code asked for something outside its directory; a bug, never a task failure to report."""


class Host:
    sandbox = False

    def device(self, path: str) -> str:
        """The path to open for the disk the control plane calls `path`; raises TaskFailed(DiskNotFound)."""
        raise NotImplementedError

    def facts(self) -> dict:
        raise NotImplementedError

    def facts_full(self, lldp_s: float) -> dict:
        """The full facts of commissioning (facts.collect_full), LLDP listened for up to `lldp_s` seconds."""
        raise NotImplementedError

    def eraser(self) -> erase.Eraser:
        """What erase_disks asks to probe and erase a disk."""
        raise NotImplementedError

    def create_bmc_user(self, username: str, password: str, user_id: int | None, log) -> dict:
        """Make `username` an enabled BMC administrator (ipmi.create_user): {"user_id", "channel", "address",
        "mac"}. Raises ipmi.NoBmc when no BMC answers, ipmi.UserFailed when the BMC refuses a step."""
        raise NotImplementedError

    def run(
        self,
        argv: list[str],
        *,
        timeout: float = 600,
        block_devices: bool = False,
        creates: tuple[str, int] = (),
        input: str | None = None,
        new_session: bool = False,
    ) -> Completed:
        """Run a tool. `block_devices`: the tool only works on the machine itself (real block devices, mounts, a
        chroot into the target), so the sandbox records the command instead; `creates`: the (device, size) such a
        command brings into existence (an md array); `input`: its standard input; `new_session`: no controlling
        terminal, so a tool that prompts reads `input` (see tools.run)."""
        raise NotImplementedError

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start a tool that streams (a decompressor, a converter reporting progress); kwargs go to Popen."""
        raise NotImplementedError

    def scratch_dir(self) -> Path:
        """Where a task may keep a large temporary file (a qcow2 image before conversion)."""
        raise NotImplementedError

    def partition_device(self, disk: str, number: int) -> str:
        """The device of partition `number` of `disk`, as the kernel names it once it has re-read the table."""
        raise NotImplementedError

    def logical_volumes(self, pv: str) -> list[storage.LogicalVolume]:
        """The logical volumes of the volume group on physical volume `pv`, activated (release deactivates)."""
        return []

    def deactivate_volume_groups(self) -> None:
        """Deactivate the volume groups logical_volumes activated, so their physical volumes can change."""

    @contextlib.contextmanager
    def mounted(self, device: str) -> Iterator[Path]:
        """`device` mounted for the length of the block (a filesystem that only grows while mounted)."""
        raise NotImplementedError
        yield

    def target_root(self) -> Path:
        raise NotImplementedError

    def remember_target_disk(self, disk: str) -> None:
        """The disk write_image filled: the target root is found on it later."""

    def reboot(self) -> None:
        raise NotImplementedError

    def poweroff(self) -> None:
        raise NotImplementedError

    def discard(self, device: str) -> bool:
        """Discard (TRIM) the whole device where supported; False when it is not."""
        raise NotImplementedError

    def reread_partitions(self, device: str) -> None:
        """Make the kernel (and udev) see a new partition table before anything opens the partitions."""
        raise NotImplementedError

    def holders(self, disk: str) -> list[str]:
        """Devices stacked on `disk` (an assembled md array), which must be stopped before it is wiped."""
        return []

    def efi(self) -> bool:
        """The machine booted by UEFI (so its boot loader lives on an ESP, not in a disk's boot sectors)."""
        raise NotImplementedError

    def release(self) -> None:
        """Undo what the host set up for tasks (a mounted target root) before the agent exits or the machine
        reboots."""


class RealHost(Host):
    """The memory OS of the machine being installed."""

    def __init__(self, state_dir: Path, target_dir: Path | None = None):
        self.state_dir = state_dir
        self._target_dir = target_dir
        self._mounted: Path | None = None
        self._active_vgs: list[str] = []

    def device(self, path: str) -> str:
        if not _DEVICE_NAME.match(path):
            raise TaskFailed("DiskNotFound", f"{path} is not a device name under /dev")
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError as exc:
            raise TaskFailed("DiskNotFound", f"{path} does not exist") from exc
        if not stat.S_ISBLK(mode):
            raise TaskFailed("DiskNotFound", f"{path} is not a block device")
        return path

    def facts(self) -> dict:
        return facts.collect()

    def facts_full(self, lldp_s: float) -> dict:
        return facts.collect_full(lldp_s=lldp_s, run=self.tool_runner)

    def tool_runner(self, argv: list[str], timeout: float, **kwargs) -> Completed:
        """`run` in the (argv, timeout) shape the hardware readers take."""
        return self.run(argv, timeout=timeout, **kwargs)

    def eraser(self) -> erase.Eraser:
        return erase.RealEraser(self.tool_runner)

    def create_bmc_user(self, username: str, password: str, user_id: int | None, log) -> dict:
        ipmi.load_driver(self.tool_runner)
        return ipmi.create_user(ipmi.Ipmitool(self.tool_runner), username, password, user_id, log)

    def efi(self) -> bool:
        return facts.efi()

    def run(
        self,
        argv: list[str],
        *,
        timeout: float = 600,
        block_devices: bool = False,
        creates: tuple[str, int] = (),
        input: str | None = None,
        new_session: bool = False,
    ) -> Completed:
        log.info("running %s", shlex.join(argv))
        return tools.run(argv, timeout, input, new_session)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        log.info("starting %s", shlex.join(argv))
        return tools.popen(argv, **kwargs)

    def scratch_dir(self) -> Path:
        # In the memory OS the state directory is on the tmpfs root: the only space there is, RAM.
        return self.state_dir

    def target_root(self) -> Path:
        if self._target_dir is not None:
            return self._target_dir
        if self._mounted is None:
            self._mounted = self._mount_target()
        return self._mounted

    def remember_target_disk(self, disk: str) -> None:
        (self.state_dir / "target-disk").write_text(disk)

    def _mount_target(self) -> Path:
        # The contract has no "mount" task: the root filesystem is found on the disk that write_image filled.
        try:
            disk = (self.state_dir / "target-disk").read_text().strip()
        except FileNotFoundError as exc:
            raise TaskFailed("TargetNotFound", "no image was written yet, so there is no target root") from exc
        self.reread_partitions(disk)
        root = storage.find_root(self, disk)
        dev = root.lv.path if root.lv else self.partition_device(disk, root.partition.number)
        mountpoint = self.state_dir / "target"
        mountpoint.mkdir(parents=True, exist_ok=True)
        done = self.run(["mount", dev, str(mountpoint)], timeout=120)
        if done.returncode != 0:
            raise TaskFailed("TargetMountFailed", f"mount {dev} failed: {done.output.strip()}")
        return mountpoint

    def partition_device(self, disk: str, number: int) -> str:
        name = os.path.basename(disk)
        for part in Path("/sys/block", name).glob(f"{name}*"):
            try:
                if int((part / "partition").read_text()) == number:
                    return f"/dev/{part.name}"
            except (FileNotFoundError, ValueError):
                continue
        raise TaskFailed("TargetNotFound", f"the kernel shows no partition {number} of {disk}")

    def logical_volumes(self, pv: str) -> list[storage.LogicalVolume]:
        done = self.run(["pvs", "--noheadings", "-o", "vg_name", pv], timeout=60)
        vg = done.output.strip() if done.returncode == 0 else ""
        if not vg:
            log.warning("%s is an LVM physical volume in no volume group: %s", pv, done.output.strip())
            return []
        # Only this volume group: the memory OS may see other disks' groups, which are none of the task's business.
        done = self.run(["vgchange", "--activate", "y", vg], timeout=120)
        if done.returncode != 0:
            raise TaskFailed("TargetNotFound", f"cannot activate volume group {vg} on {pv}: {done.output.strip()}")
        if vg not in self._active_vgs:
            self._active_vgs.append(vg)
        self._optional(["udevadm", "settle"])
        done = self.run(
            ["lvs", "--noheadings", "--separator", "|", "--units", "b", "--nosuffix", "-o", "lv_name,lv_size", vg],
            timeout=60,
        )
        found = []
        for line in done.output.splitlines() if done.returncode == 0 else []:
            name, _, size = line.strip().partition("|")
            if not name or not size.isdigit():
                continue
            # Device-mapper's own node: /dev/<vg>/<lv> is a udev symlink a memory OS without udev does not have.
            path = f"/dev/mapper/{vg.replace('-', '--')}-{name.replace('-', '--')}"
            fstype = self.run(["blkid", "-o", "value", "-s", "TYPE", path], timeout=30).output.strip()
            found.append(storage.LogicalVolume(path, vg, name, int(size), fstype))
        return found

    @contextlib.contextmanager
    def mounted(self, device: str) -> Iterator[Path]:
        mountpoint = self.state_dir / "mnt"
        mountpoint.mkdir(parents=True, exist_ok=True)
        done = self.run(["mount", device, str(mountpoint)], timeout=120)
        if done.returncode != 0:
            raise TaskFailed("TargetMountFailed", f"mount {device} failed: {done.output.strip()}")
        try:
            yield mountpoint
        finally:
            done = self.run(["umount", str(mountpoint)], timeout=120)
            if done.returncode != 0:
                log.warning("could not unmount %s from %s: %s", device, mountpoint, done.output.strip())

    def deactivate_volume_groups(self) -> None:
        while self._active_vgs:
            vg = self._active_vgs.pop()
            done = self.run(["vgchange", "--activate", "n", vg], timeout=120)
            if done.returncode != 0:
                log.warning("could not deactivate volume group %s: %s", vg, done.output.strip())

    def discard(self, device: str) -> bool:
        # Without --force, which would also drop blkdiscard's own exclusive open (its guard against mounted disks).
        return self._optional(["blkdiscard", device], timeout=3600)

    def reread_partitions(self, device: str) -> None:
        # Memory OSes differ in what they carry: partprobe (parted) or util-linux's blockdev and partx; udevadm may
        # be absent. partx also works where a whole-disk re-read is refused (a loop device without partition
        # scanning, a disk with a partition still open).
        for argv in (["partprobe", device], ["blockdev", "--rereadpt", device], ["partx", "--update", device]):
            if self._optional(argv):
                break
        self._optional(["udevadm", "settle"])

    def _optional(self, argv: list[str], timeout: float = 120) -> bool:
        """Run a tool the job can do without: False when it failed or the memory OS does not carry it."""
        try:
            return self.run(argv, timeout=timeout).returncode == 0
        except TaskFailed as exc:
            if exc.reason != "ToolMissing":
                raise
            return False

    def holders(self, disk: str) -> list[str]:
        name = os.path.basename(disk)
        base = Path("/sys/block", name)
        found = [h.name for h in base.glob("holders/*")]
        found += [h.name for h in base.glob(f"{name}*/holders/*")]
        return [f"/dev/{h}" for h in sorted(set(found))]

    def release(self) -> None:
        if self._mounted is not None:
            # A clean unmount leaves no journal to replay on the installed system's first boot.
            done = self.run(["umount", str(self._mounted)], timeout=120)
            if done.returncode != 0:
                log.warning("could not unmount the target root %s: %s", self._mounted, done.output.strip())
            self._mounted = None
        # An active group holds its disk: the next task's exclusive open, and the installed system's own
        # activation at boot, want it let go.
        self.deactivate_volume_groups()

    def reboot(self) -> None:
        self.release()
        os.sync()
        self.run(_power_command("reboot"), timeout=60)

    def poweroff(self) -> None:
        self.release()
        os.sync()
        self.run(_power_command("poweroff"), timeout=60)


def _power_command(action: str) -> list[str]:
    # A memory OS without systemd as PID 1 has no manager to ask; -f goes straight to the kernel.
    if os.path.isdir("/run/systemd/system"):
        return ["systemctl", action]
    return [action, "-f"]


class SandboxHost(Host):
    """Disks are `DIR/disks/<name>.img`, the target root is `DIR/target/`, nothing reaches the host's devices."""

    sandbox = True

    def __init__(self, root: Path):
        self.root = Path(os.path.realpath(root))
        self.disks = self.root / "disks"
        self.target = self.root / "target"
        self.commands_log = self.root / "commands.log"
        self.disks.mkdir(parents=True, exist_ok=True)
        self.target.mkdir(parents=True, exist_ok=True)

    def device(self, path: str) -> str:
        match = _DEVICE_NAME.match(path)
        if not match:
            raise TaskFailed("DiskNotFound", f"{path} is not a device name under /dev")
        candidate = self.disks / f"{match.group(1)}.img"
        resolved = Path(os.path.realpath(candidate))
        if resolved.parent != self.disks:
            raise SandboxViolation(f"{candidate} resolves outside the sandbox to {resolved}")
        try:
            mode = os.stat(resolved).st_mode
        except FileNotFoundError as exc:
            raise TaskFailed("DiskNotFound", f"{path} does not exist (no {candidate})") from exc
        if not stat.S_ISREG(mode):
            raise SandboxViolation(f"{resolved} is not a regular file")
        return str(resolved)

    def create_disk(self, path: str, size: int) -> str:
        """A new sandbox disk (what mdadm would have assembled), sparse."""
        match = _DEVICE_NAME.match(path)
        if not match:
            raise TaskFailed("InvalidParams", f"{path} is not a device name under /dev")
        image = self.disks / f"{match.group(1)}.img"
        with open(image, "wb") as f:
            f.truncate(size)
        return str(image)

    def facts(self) -> dict:
        return facts.collect_sandbox(self.root)

    def facts_full(self, lldp_s: float) -> dict:
        return facts.collect_full_sandbox(self.root)

    def eraser(self) -> erase.Eraser:
        return erase.SandboxEraser(self.root, self.record)

    def create_bmc_user(self, username: str, password: str, user_id: int | None, log) -> dict:
        """The lab's BMC stands in for the real one: the user goes to `DIR/bmc-user.json` (mode 0600), which the
        lab's BMC reads, and the answer carries the address and MAC machine.json declares under "bmc". Without a
        declared BMC the machine has none, as a real one without a BMC answers."""
        bmc = facts.collect_full_sandbox(self.root)["bmc"]
        if not bmc:
            raise ipmi.NoBmc('no BMC answers in-band (machine.json declares no "bmc")')
        path = self.root / "bmc-user.json"
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = {}
        same_user = isinstance(before, dict) and before.get("username") == username
        slot = user_id or (before.get("user_id") if same_user else None) or SANDBOX_BMC_USER_ID
        user = {"username": username, "password": password, "user_id": slot, "channel": SANDBOX_BMC_CHANNEL,
                "privilege": "administrator", "enabled": True}  # fmt: skip
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (json.dumps(user, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        log(f"sandbox: BMC user {username} (slot {slot}) written to {path}")
        return {"user_id": slot, "channel": SANDBOX_BMC_CHANNEL, "address": str(bmc.get("address", "")),
                "mac": str(bmc.get("mac", ""))}  # fmt: skip

    def efi(self) -> bool:
        return facts.collect_sandbox(self.root)["efi"]

    def run(
        self,
        argv: list[str],
        *,
        timeout: float = 600,
        block_devices: bool = False,
        creates: tuple[str, int] = (),
        input: str | None = None,
        new_session: bool = False,
    ) -> Completed:
        if block_devices:
            self.record(argv)
            if creates:
                self.create_disk(*creates)
            if argv[:2] == ["mdadm", "--create"]:
                self._remember_array(argv)
            if argv[:3] == ["mdadm", "--detail", "--brief"]:
                return self._describe_array(argv[-1])
            return Completed(0, "")
        self._check(argv)
        return tools.run(argv, timeout, input, new_session)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        self._check(argv)
        return tools.popen(argv, **kwargs)

    def _check(self, argv: list[str]) -> None:
        for arg in argv:
            if self._names_host_device(arg):
                raise SandboxViolation(f"refusing to run {shlex.join(argv)} in sandbox mode: it names {arg}")

    def scratch_dir(self) -> Path:
        scratch = self.root / "scratch"
        scratch.mkdir(exist_ok=True)
        return scratch

    @contextlib.contextmanager
    def mounted(self, device: str) -> Iterator[Path]:
        mountpoint = self.root / "mnt"
        mountpoint.mkdir(exist_ok=True)
        self.record(["mount", device, str(mountpoint)])
        yield mountpoint
        self.record(["umount", str(mountpoint)])

    def partition_device(self, disk: str, number: int) -> str:
        # Never opened: a disk image file has no partition devices, so commands naming one are only recorded.
        self.device(disk)
        return f"{disk}p{number}" if disk[-1].isdigit() else f"{disk}{number}"

    def _names_host_device(self, arg: str) -> bool:
        # `--device=/dev/sda` or `1:/dev/sda` hide a path inside an option; look at every path-like piece.
        for piece in re.split(r"[=,:]", arg):
            if not piece.startswith("/"):
                continue
            real = os.path.realpath(piece)
            if real.startswith(f"{self.root}/"):
                continue
            if real in ("/dev", "/sys", "/proc") or real.startswith(("/dev/", "/sys/", "/proc/")):
                return True
        return False

    def _remember_array(self, argv: list[str]) -> None:
        arrays = self._arrays()
        metadata = next((a.split("=", 1)[1] for a in argv if a.startswith("--metadata=")), "1.2")
        members = [a for a in argv[3:] if not a.startswith("-")]
        arrays[argv[2]] = {"metadata": metadata, "uuid": str(uuid.uuid5(_SANDBOX_ARRAYS, shlex.join(members)))}
        (self.root / "arrays.json").write_text(json.dumps(arrays, sort_keys=True) + "\n")

    def _arrays(self) -> dict:
        try:
            return json.loads((self.root / "arrays.json").read_text())
        except FileNotFoundError:
            return {}

    def _describe_array(self, device: str) -> Completed:
        """What mdadm --detail --brief says of an array the sandbox's mdadm --create made (same line shape)."""
        array = self._arrays().get(device)
        if array is None:
            return Completed(1, f"mdadm: cannot open {device}: No such file or directory\n")
        uuid_hex = array["uuid"].replace("-", "")
        mdadm_uuid = ":".join(uuid_hex[i : i + 8] for i in range(0, 32, 8))
        name = f"sandbox:{device.removeprefix('/dev/md')}"
        return Completed(0, f"ARRAY {device} metadata={array['metadata']} name={name} UUID={mdadm_uuid}\n")

    def record(self, argv: list[str]) -> None:
        with open(self.commands_log, "a") as f:
            f.write(shlex.join(argv) + "\n")

    def planned_commands(self) -> list[str]:
        try:
            return self.commands_log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def target_root(self) -> Path:
        return self.target

    def remember_target_disk(self, disk: str) -> None:
        (self.root / "target-disk").write_text(disk)

    def discard(self, device: str) -> bool:
        return False

    def reread_partitions(self, device: str) -> None:
        self.record(["partprobe", device])

    def reboot(self) -> None:
        self._request("reboot")

    def poweroff(self) -> None:
        self._request("poweroff")

    def _request(self, action: str) -> None:
        (self.root / f"{action}-requested").write_text(json.dumps({"at": time.time()}) + "\n")
        log.info("sandbox: %s requested, recorded in %s", action, self.root / f"{action}-requested")
