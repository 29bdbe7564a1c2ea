"""Check the `storage:` block of autoinstall user-data files against curtin's storage-config rules.

Runs under Debian's python3 with the modules .ci/setup-cloud-init unpacked (yaml, jsonschema):
    var/cloud-init/python curtin_storage_check.py USER_DATA...
Prints each file's problems and exits 1 when any file has one.

The per-action schemas restate the rules of curtin's curtin/block/schemas.py (draft 7, one schema per action
type, no unknown keys) for the action types provisioner writes, as of curtin 25.x; curtin is not packaged for
Debian or PyPI, so its module cannot be imported here. On top of them, what curtin and subiquity check while
applying the config: ids unique, every reference to an earlier action, partition numbers unique per disk,
RAID member counts, "/" mounted, every swap format given a mount. subiquity reads a size of -1 as "the rest"
before curtin sees it, so -1 is allowed for partitions and logical volumes.
"""

import sys

import jsonschema
import yaml

REF = {"type": "string"}
SIZE = {
    "oneOf": [
        {"type": "string", "pattern": r"^([1-9]\d*(\.\d+)?|\d+\.\d+)(K|M|G|T)?B?$"},
        {"type": "integer", "minimum": 1},
        {"const": -1},
    ]
}
PATH_DEV = r"^/dev/[^/]+(/[^/]+)*$"
FSTYPES = ["btrfs", "ext2", "ext3", "ext4", "fat", "fat12", "fat16", "fat32", "vfat", "swap", "xfs"]
BOOL01 = {"type": ["boolean", "integer"], "minimum": 0, "maximum": 1}


def action(type_: str, required: list[str], properties: dict) -> dict:
    return {
        "type": "object",
        "required": ["id", "type", *required],
        "additionalProperties": False,
        "properties": {"id": {"type": "string"}, "type": {"const": type_}, "preserve": {"type": "boolean"},
                       **properties},
    }  # fmt: skip


SCHEMAS = {
    "disk": action("disk", ["path"], {
        "name": {"type": "string"},
        "path": {"type": "string", "pattern": PATH_DEV},
        "serial": {"type": "string"},
        "wwn": {"type": "string"},
        "model": {"type": "string"},
        "ptable": {"enum": ["dos", "gpt", "msdos", "vtoc"]},
        "wipe": {"enum": ["random", "superblock", "superblock-recursive", "zero"]},
        "grub_device": BOOL01,
    }),
    "partition": action("partition", ["device", "size"], {
        "device": REF,
        "size": SIZE,
        "number": {"type": "integer", "minimum": 1},
        "wipe": {"enum": ["random", "superblock", "superblock-recursive", "zero"]},
        "flag": {"enum": ["bios_grub", "boot", "extended", "home", "linux", "logical", "lvm", "mbr", "msftres",
                          "prep", "raid", "swap", ""]},
        "grub_device": BOOL01,
        "name": {"type": "string"},
    }),
    "raid": action("raid", ["name", "raidlevel", "devices"], {
        "name": {"type": "string"},
        "raidlevel": {"enum": [0, 1, 4, 5, 6, 10, "raid0", "raid1", "raid4", "raid5", "raid6", "raid10"]},
        "devices": {"type": "array", "items": REF, "minItems": 1},
        "spare_devices": {"type": "array", "items": REF},
        "metadata": {"type": ["string", "number"]},
        "ptable": {"enum": ["dos", "gpt", "msdos", "vtoc"]},
    }),
    "lvm_volgroup": action("lvm_volgroup", ["name", "devices"], {
        "name": {"type": "string"},
        "devices": {"type": "array", "items": REF, "minItems": 1},
    }),
    "lvm_partition": action("lvm_partition", ["name", "volgroup", "size"], {
        "name": {"type": "string"},
        "volgroup": REF,
        "size": SIZE,
    }),
    "format": action("format", ["volume", "fstype"], {
        "volume": REF,
        "fstype": {"enum": FSTYPES},
        "label": {"type": "string"},
    }),
    "mount": action("mount", ["device", "path"], {
        "device": REF,
        "path": {"oneOf": [{"type": "string", "pattern": r"(^/$|^(/[^/]+)+$)"}, {"const": "none"}]},
        "options": {"type": "string"},
    }),
}  # fmt: skip
# Which keys of each action name other actions.
REFERENCES = {
    "partition": ["device"],
    "raid": ["devices", "spare_devices"],
    "lvm_volgroup": ["devices"],
    "lvm_partition": ["volgroup"],
    "format": ["volume"],
    "mount": ["device"],
}
MIN_MEMBERS = {1: 2, "raid1": 2, 10: 2, "raid10": 2, 5: 3, 6: 4}


def problems(storage) -> list[str]:
    if not isinstance(storage, dict) or not isinstance(storage.get("config"), list):
        return ["storage must be a mapping with a list `config`"]
    found = []
    if set(storage) - {"config", "swap"}:
        found.append(f"unknown storage keys {sorted(set(storage) - {'config', 'swap'})}")
    swap = storage.get("swap", {})
    if not isinstance(swap, dict) or set(swap) - {"size", "filename", "maxsize", "force"}:
        found.append("swap must be a mapping of size/filename/maxsize/force")
    seen: dict[str, dict] = {}
    numbers: set[tuple[str, int]] = set()
    unmounted_swap: set[str] = set()
    mounts: set[str] = set()
    for index, item in enumerate(storage["config"]):
        where = f"config[{index}]"
        schema = SCHEMAS.get(item.get("type") if isinstance(item, dict) else None)
        if schema is None:
            found.append(f"{where}: unknown action {item!r}")
            continue
        for error in jsonschema.Draft7Validator(schema).iter_errors(item):
            found.append(f"{where} ({item['type']} {item.get('id')}): {'/'.join(map(str, error.path))} {error.message}")
        if item.get("id") in seen:
            found.append(f"{where}: id {item['id']!r} used twice")
        for key in REFERENCES.get(item["type"], []):
            refs = item.get(key, [])
            for ref in refs if isinstance(refs, list) else [refs]:
                if ref not in seen:
                    found.append(f"{where}: {key} {ref!r} is not an earlier action")
        kind = item["type"]
        if kind == "partition" and "number" in item:
            if (item["device"], item["number"]) in numbers:
                found.append(f"{where}: partition number {item['number']} twice on {item['device']}")
            numbers.add((item["device"], item["number"]))
            if item.get("flag") in ("boot", "bios_grub") and seen.get(item["device"], {}).get("type") != "disk":
                found.append(f"{where}: a {item['flag']} partition must be on a disk")
        if kind == "raid" and len(item.get("devices", [])) < MIN_MEMBERS.get(item.get("raidlevel"), 1):
            found.append(f"{where}: RAID {item.get('raidlevel')} needs more members than {item.get('devices')}")
        if kind == "format" and item.get("fstype") == "swap":
            unmounted_swap.add(item["id"])
        if kind == "mount" and item.get("device") in seen:
            fstype = seen[item["device"]].get("fstype")
            if item.get("path") == "none":
                if fstype != "swap":
                    found.append(f"{where}: only swap is mounted at none")
                unmounted_swap.discard(item["device"])
            else:
                if item.get("path") in mounts:
                    found.append(f"{where}: {item['path']} mounted twice")
                mounts.add(item.get("path"))
        seen[item.get("id")] = item
    if "/" not in mounts:
        found.append("nothing is mounted at /")
    if unmounted_swap:
        found.append(f"swap formats without a mount: {sorted(unmounted_swap)}")
    return found


def main(argv: list[str]) -> int:
    failed = False
    for path in argv[1:]:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        for problem in problems(data.get("autoinstall", {}).get("storage")):
            print(f"{path}: {problem}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
