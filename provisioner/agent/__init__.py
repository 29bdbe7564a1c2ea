"""The in-band agent: runs inside the in-memory OS, pulls its tasks from the control plane and reports back.

Standard library only (Python 3.9 or later), so it ships as one zipapp file: a test imports every module in a
fresh interpreter and fails on anything outside the standard library.

    python -m provisioner.agent.build -o dist/provisioner-agent.pyz
    python3 provisioner-agent.pyz [--url URL] [--token-file FILE] [--state-dir DIR] [--sandbox DIR]

URL and token come from `provisioner.url=` / `provisioner.token=` on the kernel command line unless given;
the token is read from --token-file, then $PROVISIONER_TOKEN, then --token, then the kernel command line. A boot
with `provisioner.mode=discover` (or --discover) has no token and runs discovery mode (`discovery`): the machine
announces itself with its full facts and answers only inventory and poweroff.

Modules: `cli` (arguments), `loop` (register, poll, run, report), `client` (the HTTP contract of
docs/agent-api.md), `journal` (task ids started and finished, under --state-dir, default
/run/provisioner-agent/journal-<install>.jsonl), `host` (the only door to devices and tools: real or sandbox),
`tools` (running a tool), `facts` (hardware facts, and the full facts of commissioning), `parsers` (what the
hardware tools print), `lldp` (switch ports heard on raw sockets), `ipmi` (the BMC in-band), `tasks` (the registry
`TASKS`, one plain function per task kind). Several tasks run at once when the control plane hands out a parallel
stage.

Sandbox mode (`--sandbox DIR`): `/dev/<name>` is `DIR/disks/<name>.img` (create them, sparse, before starting),
the target root is `DIR/target/`, `DIR/machine.json` declares the NICs reported at register and the rest of the
facts (`{"nics": [{"name": "eno1", "mac": "52:54:00:..", "link": true}], "dmi": {...}, "cpus": 2, "memory_bytes": ..,
"efi": false, "disks": {"sda": {"wwn": "naa.50..", "rotational": false}}}`, and for the full facts "cpu",
"memory_modules", "pci", "firmware", "bmc", "notes", per disk "transport" and "smart", per NIC "driver", "firmware"
and "lldp"),
commands that need the real machine (mdadm, partprobe, mounts, a chroot into the target) are appended to
`DIR/commands.log` instead of run (`mdadm --detail --brief` is answered from the arrays recorded in `DIR/arrays.json`),
reboot and poweroff write `DIR/reboot-requested` / `DIR/poweroff-requested`, and the journal is in `DIR/state/`.
"""

AGENT_VERSION = "1"
