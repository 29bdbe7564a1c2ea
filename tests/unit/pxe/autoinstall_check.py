"""Structure check of an Ubuntu autoinstall user-data file: what cloud-init's own schema does not look into.

Runs under Debian's python3 with the modules .ci/setup-cloud-init unpacked (yaml, jsonschema):
    var/cloud-init/python autoinstall_check.py USER_DATA [INNER_USER_DATA_OUT]
Prints the problems and exits 1 when the `autoinstall:` block is malformed; with a second argument, writes the
block's `user-data:` (the installed system's cloud-config) there so cloud-init's schema can check it too.
"""

import sys

import jsonschema
import yaml

COMMANDS = {"type": "array", "items": {"type": "string"}}
MAC = {"type": "string", "pattern": "^([0-9a-f]{2}:){5}[0-9a-f]{2}$"}
# The top-level keys subiquity knows: anything else (a typo such as late_commands) is ignored by the installer.
KNOWN_KEYS = [
    "version",
    "interactive-sections",
    "early-commands",
    "locale",
    "refresh-installer",
    "keyboard",
    "source",
    "network",
    "proxy",
    "apt",
    "storage",
    "identity",
    "active-directory",
    "ubuntu-pro",
    "ssh",
    "codecs",
    "drivers",
    "oem",
    "snaps",
    "debconf-selections",
    "packages",
    "kernel",
    "kernel-crash-dumps",
    "timezone",
    "updates",
    "shutdown",
    "late-commands",
    "error-commands",
    "reporting",
    "user-data",
]
SCHEMA = {
    "type": "object",
    "required": ["autoinstall"],
    "properties": {
        "autoinstall": {
            "type": "object",
            "required": ["version", "network", "storage", "late-commands"],
            "anyOf": [{"required": ["identity"]}, {"required": ["user-data"]}],
            "propertyNames": {"enum": KNOWN_KEYS},
            "properties": {
                "version": {"const": 1},
                "identity": {"type": "object", "required": ["hostname", "username", "password"]},
                "user-data": {"type": "object"},
                "network": {
                    "type": "object",
                    "required": ["version", "ethernets"],
                    "properties": {
                        "version": {"const": 2},
                        "ethernets": {
                            "type": "object",
                            "minProperties": 1,
                            "additionalProperties": {
                                "type": "object",
                                "required": ["match"],
                                "properties": {
                                    "match": {
                                        "type": "object",
                                        "required": ["macaddress"],
                                        "properties": {"macaddress": MAC},
                                    },
                                    # Linux interface names are at most 15 characters.
                                    "set-name": {"type": "string", "pattern": "^[a-z0-9_-]{1,15}$"},
                                },
                            },
                        },
                    },
                },
                "storage": {
                    "type": "object",
                    "properties": {
                        "layout": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"enum": ["lvm", "direct", "zfs"]}, "match": {"type": "object"}},
                        }
                    },
                },
                "ssh": {"type": "object", "properties": {"install-server": {"type": "boolean"}}},
                "reporting": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"enum": ["print", "rsyslog", "webhook", "journald", "none"]}},
                        "if": {"properties": {"type": {"const": "webhook"}}},
                        "then": {"required": ["endpoint"]},
                    },
                },
                "early-commands": COMMANDS,
                "late-commands": COMMANDS,
                "error-commands": COMMANDS,
                "shutdown": {"enum": ["reboot", "poweroff"]},
            },
        }
    },
}


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        text = f.read()
    if not text.startswith("#cloud-config\n"):
        print("user-data must start with #cloud-config")
        return 1
    data = yaml.safe_load(text)
    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.path))
    for error in errors:
        print("/".join(str(p) for p in error.path) or "<root>", ":", error.message)
    if errors:
        return 1
    if len(argv) > 2:
        with open(argv[2], "w", encoding="utf-8") as f:
            f.write("#cloud-config\n" + yaml.safe_dump(data["autoinstall"].get("user-data", {})))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
