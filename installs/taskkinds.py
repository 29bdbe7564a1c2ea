"""Every task a workflow may name, described once: what it is, who runs it, its parameters, and what it
needs done before it and makes possible after it.

Three kinds of task: the agent's (run inside the memory OS, installs/callbacks.py hands them out),
out-of-band ones (a worker calls the machine's BMC) and the control plane's own (write the boot config,
wait for the machine, verify). Each maps onto a step kind (installs/stepkinds.py), which says how the
engine moves it. The workflow checker (installs/workflow.py) reads the parameter specs and the
needs/provides words below; the task reference in docs/workflow-tasks.md is generated from this table
(`manage.py workflow docs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from inventory.models import InstallMethod
from provisioner.bmc.registry import Capability

from .stepkinds import StepKind


class Category(StrEnum):
    AGENT = "agent"  # the agent in the memory OS runs it
    OUT_OF_BAND = "out-of-band"  # a worker calls the BMC
    CONTROL = "control-plane"  # the control plane itself: files, waits, checks


class ParamType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRINGS = "list of strings"
    DISK = "disk"  # a /dev path, a disk hint (installs/hints.py) or a template giving a path
    DISKS = "disks"  # a list of /dev paths, or a hint matching several disks
    SCRIPT = "script"  # a script of the library: name or name@version
    CHOICE = "choice"
    MAPPING = "mapping"
    DRIVE_IDS = "list of drive ids or all"  # the BMC's drive ids (Redfish Drive.Id), or "all"


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType
    doc: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskKind:
    name: str  # what a workflow names in ``task:``
    category: Category
    step_kind: str  # the StepKind the engine runs it as
    doc: str
    params: tuple[Param, ...] = ()
    # Destroys data on the machine: protected machines refuse it, and it is retried only when safe_to_repeat.
    destructive: bool = False
    safe_to_repeat: bool = True
    # Words for the order check: each word a task needs must be provided by a task of an earlier stage, or
    # earlier in the same serial stage.
    needs: frozenset[str] = frozenset()
    provides: frozenset[str] = frozenset()
    # The install methods whose workflows may hold it; empty: every method.
    methods: frozenset[str] = frozenset()
    # The task waits for the machine: it must run alone (a serial stage).
    waits: bool = False
    default_retries: int = 0
    # What the machine's out-of-band driver must be able to do (provisioner.bmc.registry): an install of a
    # workflow holding this task is refused, before it starts, on a machine whose driver lacks any of them.
    capabilities: frozenset[Capability] = frozenset()

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def capabilities_for(self, params: dict) -> frozenset[Capability]:
        """What this task, with these params, needs of the machine's driver."""
        if self.name == "set_boot_device" and params.get("mode") in ("uefi", "legacy"):
            return self.capabilities | {Capability.BOOT_MODE}
        return self.capabilities


IMAGE = frozenset({InstallMethod.IMAGE})
INSTALLERS = frozenset(InstallMethod.values) - IMAGE

_DISK = "a /dev path, a disk hint such as {rotational: false}, or a template giving a path"
_DISKS = "a list of /dev paths or disk hints, or one hint matching several disks ({all: true})"
COMPRESSIONS = ("auto", "raw", "gzip", "xz", "zstd", "qcow2")

TASKS: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (
        # --- control plane and out-of-band: what every install has --------------------------------------
        TaskKind(
            "check_bmc", Category.OUT_OF_BAND, StepKind.CHECK_BMC,
            "Check that the machine's BMC answers, with its credentials.",
            provides=frozenset({"bmc"}),
            capabilities=frozenset({Capability.POWER}),
        ),
        TaskKind(
            "hardware_raid", Category.OUT_OF_BAND, StepKind.HARDWARE_RAID,
            "Build a volume (virtual disk) on the machine's RAID controller through the BMC's Redfish storage "
            "service, before the machine boots, so the agent or installer sees it as one disk. Nothing is sent "
            "when the controller already has a volume of that name. A BMC that builds volumes only at a reset "
            "(OnReset) builds it at the power cycle that follows. Redfish only; refused on protected machines.",
            params=(
                Param("level", ParamType.CHOICE, "RAID level (Redfish RAIDType)", required=True,
                      choices=("RAID0", "RAID1", "RAID5", "RAID10")),
                Param("drives", ParamType.DRIVE_IDS,
                      "the BMC's drive ids (e.g. Disk.Bay.0), or all for every drive of the controller; left out, "
                      "the controller chooses"),
                Param("name", ParamType.STRING, "the volume's name; a volume of this name already there is kept",
                      default="system"),
                Param("controller", ParamType.STRING,
                      "the BMC's storage id (e.g. RAID.Integrated.1-1); left out, the only one with drives"),
                Param("capacity_bytes", ParamType.INTEGER, "the volume's size; left out, all the drives give"),
            ),
            destructive=True,
            capabilities=frozenset({Capability.HARDWARE_RAID}),
        ),
        TaskKind(
            "write_boot_config", Category.CONTROL, StepKind.WRITE_BOOT_CONFIG,
            "Write the per-MAC pxelinux, GRUB and iPXE configs that boot the profile's kernel and initrd.",
            provides=frozenset({"boot_config"}),
        ),
        TaskKind(
            "insert_media", Category.OUT_OF_BAND, StepKind.INSERT_MEDIA,
            "For sites without DHCP or PXE on the provisioning network: build this install's ISO (the profile's "
            "kernel and initrd from the TFTP root, and the command line a network boot would get, with the "
            "machine's static address for the agent) and have the BMC attach it as a virtual CD by URL. Follow it "
            "with set_boot_device {device: cd}. The ISO is removed and the media ejected when the install ends, "
            "however it ends. Needs a driver with virtual media (Redfish); refused on protected machines.",
            provides=frozenset({"boot_config", "media"}), capabilities=frozenset({Capability.VIRTUAL_MEDIA}),
        ),
        TaskKind(
            "set_boot_pxe", Category.OUT_OF_BAND, StepKind.SET_BOOT_PXE,
            "Tell the BMC to boot from the network once. Refused on protected machines.",
            destructive=True, provides=frozenset({"netboot"}),
            capabilities=frozenset({Capability.BOOT_DEVICE}),
        ),
        TaskKind(
            "power_cycle", Category.OUT_OF_BAND, StepKind.POWER_CYCLE,
            "Power cycle the machine (on when it is off). Refused on protected machines.",
            destructive=True, provides=frozenset({"powered"}),
            capabilities=frozenset({Capability.POWER}),
        ),
        TaskKind(
            "power_on", Category.OUT_OF_BAND, StepKind.POWER_ON, "Power the machine on (nothing when it is on).",
            provides=frozenset({"powered"}),
            capabilities=frozenset({Capability.POWER}),
        ),
        TaskKind(
            "power_off", Category.OUT_OF_BAND, StepKind.POWER_OFF,
            "Power the machine off. Refused on protected machines.",
            params=(Param("soft", ParamType.BOOLEAN, "ask the OS to shut down (ACPI) instead of cutting power",
                          default=False),),
            destructive=True,
            capabilities=frozenset({Capability.POWER}),
        ),
        TaskKind(
            "set_boot_device", Category.OUT_OF_BAND, StepKind.SET_BOOT_DEVICE,
            "Set the machine's boot device through the BMC. cd boots the virtual CD an insert_media task attached. "
            "Network and CD boots are refused on protected machines.",
            params=(
                Param("device", ParamType.CHOICE, "where to boot from", required=True,
                      choices=("pxe", "disk", "cd")),
                Param("persistent", ParamType.BOOLEAN, "for every boot, not only the next", default=False),
                Param("mode", ParamType.CHOICE, "firmware boot mode to ask for; uefi and legacy need a driver with "
                      "boot_mode, auto passes the machine's recorded mode where the driver has it", default="auto",
                      choices=("auto", "uefi", "legacy")),
            ),
            capabilities=frozenset({Capability.BOOT_DEVICE}),
        ),
        TaskKind(
            "wait_boot", Category.CONTROL, StepKind.WAIT_BOOT,
            "Wait until the installer asks for its answer file, or the agent registers.",
            needs=frozenset({"boot_config", "powered"}), waits=True,
            provides=frozenset({"booted", "agent"}),
        ),
        TaskKind(
            "wait_installer", Category.CONTROL, StepKind.WAIT_INSTALLER,
            "Wait until the installer reports it finished.",
            needs=frozenset({"booted"}), methods=INSTALLERS, waits=True, provides=frozenset({"installed"}),
        ),
        # --- the agent's ------------------------------------------------------------------------------------
        TaskKind(
            "inventory", Category.AGENT, StepKind.AGENT_TASK,
            "Report the machine's hardware facts again (the agent reports them when it registers).",
            needs=frozenset({"agent"}), methods=IMAGE,
        ),
        TaskKind(
            "commission", Category.AGENT, StepKind.AGENT_TASK,
            "Collect the machine's full hardware facts — CPU, memory modules, disks with SMART health, NICs with "
            "driver, firmware, speed and the switch port heard over LLDP, PCI devices, firmware and BIOS, the BMC "
            "as the host sees it — and store them as the machine's next facts version. They fill its serial, "
            "vendor and model.",
            params=(Param("lldp_s", ParamType.INTEGER, "seconds to listen for the switches' LLDP frames",
                          default=30),),
            needs=frozenset({"agent"}), methods=IMAGE,
        ),
        TaskKind(
            "create_bmc_user", Category.AGENT, StepKind.AGENT_TASK,
            "At sites that ask for it (the site's “create a BMC user when commissioning”), add provisioner's own "
            "administrator user to the BMC in-band with ipmitool and a random password, stored encrypted as the "
            "machine's BMC credentials; skipped elsewhere. The password goes to the agent with the task and is "
            "never stored in the step.",
            params=(Param("username", ParamType.STRING, "the BMC user's name", default="provisioner"),),
            needs=frozenset({"agent"}), methods=IMAGE,
        ),
        TaskKind(
            "erase_disks", Category.AGENT, StepKind.AGENT_TASK,
            "Erase disks for release, each with the strongest method it supports — NVMe format (user data "
            "erase), ATA secure erase, else block discard, else zeroing — then read back the start, middle and "
            "end of each to verify; the method chosen per disk and why is reported.",
            params=(
                Param("disks", ParamType.DISKS, _DISKS, default={"all": True}),
                Param("method", ParamType.CHOICE, "auto picks per disk; the others force one", default="auto",
                      choices=("auto", "secure", "discard", "zero")),
                Param("verify", ParamType.BOOLEAN, "read back each disk's start, middle and end", default=True),
            ),
            destructive=True, needs=frozenset({"agent"}), methods=IMAGE,
        ),
        TaskKind(
            "wipe_disks", Category.AGENT, StepKind.AGENT_TASK,
            "Remove partition tables, RAID and filesystem signatures, and zero the first and last MiB.",
            params=(
                Param("disks", ParamType.DISKS, _DISKS, required=True),
                Param("image_url", ParamType.STRING, "the image the first disk will get: one its server announces "
                      "larger than that disk is refused before any disk is wiped; the profile's when disks are left "
                      "out"),
            ),
            destructive=True, needs=frozenset({"agent"}), methods=IMAGE,
        ),
        TaskKind(
            "raid", Category.AGENT, StepKind.AGENT_TASK,
            "Build a software RAID array with mdadm. Metadata 1.0 over whole disks puts the superblock at the end, "
            "so every member holds the image from its first sector and boots alone.",
            params=(
                Param("device", ParamType.STRING, "the array, /dev/mdN", default="/dev/md0"),
                Param("level", ParamType.CHOICE, "RAID level", required=True, choices=("1", "10")),
                Param("members", ParamType.DISKS, _DISKS, required=True),
                Param("metadata", ParamType.CHOICE, "mdadm superblock format", default="1.0", choices=("1.0", "1.2")),
            ),
            destructive=True, needs=frozenset({"agent"}), provides=frozenset({"array"}), methods=IMAGE,
        ),
        TaskKind(
            "partition", Category.AGENT, StepKind.AGENT_TASK,
            "Write a GPT partition table of a named layout.",
            params=(
                Param("disk", ParamType.DISK, _DISK, required=True),
                Param("layout", ParamType.STRING, "the partition layout's name", required=True),
            ),
            destructive=True, needs=frozenset({"agent"}), methods=IMAGE,
        ),
        TaskKind(
            "write_image", Category.AGENT, StepKind.AGENT_TASK,
            "Stream the profile's image onto the disk (or array), checking its SHA-256.",
            params=(
                Param("disk", ParamType.DISK, _DISK + "; /dev/mdN needs a raid task before it"),
                Param("url", ParamType.STRING, "the image; the profile's when left out"),
                Param("sha256", ParamType.STRING, "its SHA-256; the profile's when left out"),
                Param("compression", ParamType.CHOICE, "how the image is packed", default="auto",
                      choices=COMPRESSIONS),
            ),
            destructive=True, needs=frozenset({"agent"}), provides=frozenset({"target"}), methods=IMAGE,
            default_retries=2,
        ),
        TaskKind(
            "grow_root", Category.AGENT, StepKind.AGENT_TASK,
            "Grow the image's root partition (or its LVM volume) and filesystem to the end of the disk.",
            params=(Param("disk", ParamType.DISK, _DISK),),
            destructive=True, needs=frozenset({"target"}), methods=IMAGE,
        ),
        TaskKind(
            "bootloader", Category.AGENT, StepKind.AGENT_TASK,
            "After an image is written onto an array: mdadm.conf and the initramfs in the installed system, and "
            "the boot loader on every member, so the machine boots with any one disk missing.",
            params=(
                Param("device", ParamType.STRING, "the array", default="/dev/md0"),
                Param("members", ParamType.DISKS, _DISKS, required=True),
            ),
            destructive=True, needs=frozenset({"target", "array"}), methods=IMAGE,
        ),
        TaskKind(
            "configure_network", Category.AGENT, StepKind.AGENT_TASK,
            "Write the installed system's network config for the PXE NIC (the machine's address, or DHCP).",
            params=(Param("style", ParamType.CHOICE, "config format", default="netplan",
                          choices=("netplan", "networkmanager", "ifcfg")),),
            needs=frozenset({"target"}), methods=IMAGE,
        ),
        TaskKind(
            "set_hostname", Category.AGENT, StepKind.AGENT_TASK, "Write the installed system's host name.",
            params=(Param("hostname", ParamType.STRING, "the machine's when left out"),),
            needs=frozenset({"target"}), methods=IMAGE,
        ),
        TaskKind(
            "ssh_keys", Category.AGENT, StepKind.AGENT_TASK,
            "Install the profile's SSH keys (and the site's login key) for a user of the installed system.",
            params=(Param("user", ParamType.STRING, "whose authorized_keys", default="root"),),
            needs=frozenset({"target"}), methods=IMAGE,
        ),
        TaskKind(
            "run_script", Category.AGENT, StepKind.AGENT_TASK,
            "Run a script of the library in the memory OS, its output streamed into the install log. "
            "It runs as root with the agent's tools on PATH and no install token in its environment.",
            params=(
                Param("script", ParamType.SCRIPT, "name or name@version of a library script", required=True),
                Param("timeout", ParamType.INTEGER, "seconds; the script's own when left out"),
                Param("args", ParamType.STRINGS, "arguments the script gets ($1, $2, ...)"),
            ),
            destructive=True, safe_to_repeat=False, needs=frozenset({"agent"}), methods=IMAGE,
        ),
        TaskKind(
            "first_boot_callback", Category.AGENT, StepKind.AGENT_TASK,
            "Install the unit that calls back from the installed system's first boot (what verify waits for).",
            needs=frozenset({"target"}), provides=frozenset({"callback"}), methods=IMAGE,
        ),
        # --- finishing ------------------------------------------------------------------------------------
        TaskKind(
            "remove_boot_config", Category.CONTROL, StepKind.REMOVE_BOOT_CONFIG,
            "Remove the per-MAC boot configs (also done when the install ends, however it ends).",
        ),
        TaskKind(
            "eject_media", Category.OUT_OF_BAND, StepKind.EJECT_MEDIA,
            "Eject the virtual CD and remove this install's ISO (also done when the install ends, however it ends).",
            capabilities=frozenset({Capability.VIRTUAL_MEDIA}),
        ),
        TaskKind(
            "set_boot_disk", Category.OUT_OF_BAND, StepKind.SET_BOOT_DISK,
            "Tell the BMC to boot from the disk from now on.",
            capabilities=frozenset({Capability.BOOT_DEVICE}),
        ),
        TaskKind(
            "reboot", Category.OUT_OF_BAND, StepKind.REBOOT,
            "Power cycle into the installed system (installers reboot by themselves).",
            needs=frozenset({"target"}), methods=IMAGE, provides=frozenset({"rebooted"}),
            capabilities=frozenset({Capability.POWER}),
        ),
        TaskKind(
            "verify", Category.CONTROL, StepKind.VERIFY,
            "Image installs: wait for the installed system's first-boot callback. Installers: the BMC says the "
            "machine is on.",
            waits=True,
        ),
        TaskKind(
            "verify_ssh", Category.CONTROL, StepKind.VERIFY_SSH,
            "Log in to the installed system through the site's jump host and check host name, address and disk.",
        ),
    )
}  # fmt: skip

# What each kind of task may wait for: the checker adds these to ``needs`` by install method.
METHOD_NEEDS = {
    ("verify", InstallMethod.IMAGE): frozenset({"callback", "rebooted"}),
}
for method in INSTALLERS:
    METHOD_NEEDS[("verify", method)] = frozenset({"installed"})


def needs(kind: TaskKind, method: str) -> frozenset[str]:
    return kind.needs | METHOD_NEEDS.get((kind.name, method), frozenset())


def get(name: str) -> TaskKind | None:
    return TASKS.get(name)
