"""What an installed lab machine answers at its shell: a few commands a technician types first and everything
the install's SSH check asks (access/checks.py ``script``), computed from the machine as the lab runs it: the
installed root (``target/``), its NICs and addresses, its disk. Files are read under the root only.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from provisioner.lab.shell import Result, Shell

KERNEL = "6.1.0-lab-amd64"
KERNEL_VERSION = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.0-lab (2026-01-01)"
ROOT_FSTYPE = "ext4"


@dataclass(frozen=True)
class Nic:
    name: str
    mac: str
    link: bool
    ip: str = ""
    prefix: int = 0


@dataclass
class Installed:
    """The running installed OS of one lab machine, as its commands see it."""

    root: Path  # the machine's target/: the installed system's /
    fallback_hostname: str  # the kernel's name when /etc/hostname is missing: "localhost" on Debian
    nics: list[Nic]
    disk: str = "sda"
    disk_bytes: int = 32 << 30
    booted_at: float = field(default_factory=time.time)

    @property
    def root_device(self) -> str:
        return f"/dev/{self.disk}1"

    def path(self, path: str, cwd: str = "/") -> Path | None:
        """The host path of ``path`` inside the root, or None when it leaves the root (a symlink out, ``..``)."""
        absolute = posixpath.normpath(posixpath.join(cwd, path))
        host = self.root / absolute.lstrip("/")
        try:
            resolved = host.resolve()
        except OSError:
            return None
        return host if resolved == self.root.resolve() or resolved.is_relative_to(self.root.resolve()) else None

    def read(self, path: str) -> str | None:
        host = self.path(path)
        try:
            return host.read_text(errors="replace") if host is not None and host.is_file() else None
        except OSError:
            return None

    def append(self, path: str, text: str) -> bool:
        """Append to a file of the root (made with its directories); False when the path leaves the root."""
        host = self.path(path)
        if host is None:
            return False
        host.parent.mkdir(parents=True, exist_ok=True)
        with open(host, "a") as f:
            f.write(text)
        return True

    def hostname(self) -> str:
        text = (self.read("/etc/hostname") or "").strip()
        return text.split()[0] if text else self.fallback_hostname

    def fqdn(self) -> str:
        short = self.hostname()
        if "." in short:
            return short
        for line in (self.read("/etc/hosts") or "").splitlines():
            names = line.split("#")[0].split()[1:]
            if short in names:
                return next((n for n in names if n.startswith(short + ".")), short)
        return short

    def user(self, name: str) -> tuple[int, int, str, str] | None:
        """(uid, gid, home, shell) from /etc/passwd; root without a passwd file is uid 0 in /root, as the agent's
        ssh_keys task assumes."""
        for line in (self.read("/etc/passwd") or "").splitlines():
            fields = line.split(":")
            if len(fields) >= 7 and fields[0] == name:
                try:
                    return int(fields[2]), int(fields[3]), fields[5], fields[6]
                except ValueError:
                    return None
        return (0, 0, "/root", "/bin/bash") if name == "root" else None


def _ctx(shell: Shell) -> Installed:
    return shell.context


def _flags(args: list[str]) -> tuple[set[str], list[str]]:
    flags, operands = set(), []
    for arg in args:
        if arg.startswith("-") and len(arg) > 1 and not arg.startswith("--"):
            flags.update(arg[1:])
        elif arg.startswith("--") and len(arg) > 2:
            flags.add(arg)
        else:
            operands.append(arg)
    return flags, operands


def ok(out: str = "") -> Result:
    return Result(0, out)


def fail(message: str, status: int = 1) -> Result:
    return Result(status, "", message + "\n")


# -- simple commands ----------------------------------------------------------------------------------------------


def hostname(shell: Shell, argv: list[str], stdin: str) -> Result:
    flags, _ = _flags(argv[1:])
    if "f" in flags or "--fqdn" in flags:
        return ok(_ctx(shell).fqdn() + "\n")
    name = _ctx(shell).hostname()
    return ok((name.split(".")[0] if "s" in flags else name) + "\n")


def uname(shell: Shell, argv: list[str], stdin: str) -> Result:
    flags, _ = _flags(argv[1:])
    parts = {"s": "Linux", "n": _ctx(shell).hostname(), "r": KERNEL, "v": KERNEL_VERSION, "m": "x86_64",
             "o": "GNU/Linux"}  # fmt: skip
    if "a" in flags:
        return ok(" ".join(parts.values()) + "\n")
    chosen = [value for key, value in parts.items() if key in flags] or [parts["s"]]
    return ok(" ".join(chosen) + "\n")


def whoami(shell: Shell, argv: list[str], stdin: str) -> Result:
    return ok(shell.env.get("USER", "root") + "\n")


def id_(shell: Shell, argv: list[str], stdin: str) -> Result:
    name = shell.env.get("USER", "root")
    uid, gid, _, _ = _ctx(shell).user(name) or (0, 0, "", "")
    return ok(f"uid={uid}({name}) gid={gid}({name}) groups={gid}({name})\n")


def pwd(shell: Shell, argv: list[str], stdin: str) -> Result:
    return ok(shell.env.get("PWD", "/") + "\n")


def cd(shell: Shell, argv: list[str], stdin: str) -> Result:
    to = argv[1] if len(argv) > 1 else shell.env.get("HOME", "/")
    path = posixpath.normpath(posixpath.join(shell.env.get("PWD", "/"), to))
    host = _ctx(shell).path(path)
    if host is None or not host.is_dir():
        return fail(f"sh: cd: {to}: No such file or directory")
    shell.env["PWD"] = path
    return ok()


def cat(shell: Shell, argv: list[str], stdin: str) -> Result:
    _, files = _flags(argv[1:])
    if not files:
        return ok(stdin)
    out, err, status = [], [], 0
    for name in files:
        host = _ctx(shell).path(name, shell.env.get("PWD", "/"))
        if host is not None and host.is_dir():
            err.append(f"cat: {name}: Is a directory\n")
            status = 1
            continue
        text = _ctx(shell).read(posixpath.join(shell.env.get("PWD", "/"), name))
        if text is None:
            err.append(f"cat: {name}: No such file or directory\n")
            status = 1
        else:
            out.append(text)
    return Result(status, "".join(out), "".join(err))


def ls(shell: Shell, argv: list[str], stdin: str) -> Result:
    flags, operands = _flags(argv[1:])
    out, err, status = [], [], 0
    for name in operands or ["."]:
        host = _ctx(shell).path(name, shell.env.get("PWD", "/"))
        if host is None or not (host.exists() or host.is_symlink()):
            err.append(f"ls: cannot access '{name}': No such file or directory\n")
            status = 2
            continue
        entries = sorted(os.listdir(host)) if host.is_dir() else [name]
        if "a" not in flags:
            entries = [e for e in entries if not e.startswith(".")]
        if len(operands) > 1 and host.is_dir():
            out.append(f"{name}:\n")
        out.append("".join(e + "\n" for e in entries))
    return Result(status, "".join(out), "".join(err))


def echo(shell: Shell, argv: list[str], stdin: str) -> Result:
    args = argv[1:]
    newline = True
    if args and args[0] == "-n":
        args, newline = args[1:], False
    return ok(" ".join(args) + ("\n" if newline else ""))


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "r": "\r", "a": "\a", "0": "\0"}


def printf(shell: Shell, argv: list[str], stdin: str) -> Result:
    if len(argv) < 2:
        return fail("printf: usage: printf format [arguments]", 2)
    fmt, args = argv[1], list(argv[2:])
    fmt = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), fmt)
    pieces = re.split(r"(%[sd%])", fmt)
    out = []
    while True:  # POSIX printf repeats the format while arguments remain
        used = 0
        for piece in pieces:
            if piece == "%%":
                out.append("%")
            elif piece in ("%s", "%d"):
                value = args[used] if used < len(args) else ""
                used += 1
                out.append(str(int(value)) if piece == "%d" and value.lstrip("-").isdigit() else value or "")
            else:
                out.append(piece)
        args = args[used:]
        if not args or used == 0:
            break
    return ok("".join(out))


def true(shell: Shell, argv: list[str], stdin: str) -> Result:
    return ok()


def false(shell: Shell, argv: list[str], stdin: str) -> Result:
    return Result(1)


def date(shell: Shell, argv: list[str], stdin: str) -> Result:
    now = datetime.now(UTC)
    fmt = next((a[1:] for a in argv[1:] if a.startswith("+")), None)
    return ok((now.strftime(fmt) if fmt else now.strftime("%a %b %e %H:%M:%S UTC %Y")) + "\n")


def uptime(shell: Shell, argv: list[str], stdin: str) -> Result:
    up = max(0, int(time.time() - _ctx(shell).booted_at))
    hours, minutes = divmod(up // 60, 60)
    since = f"{hours}:{minutes:02d}" if hours else f"{minutes} min"
    now = datetime.now(UTC).strftime("%H:%M:%S")
    return ok(f" {now} up {since},  1 user,  load average: 0.00, 0.01, 0.00\n")


def exit_(shell: Shell, argv: list[str], stdin: str) -> Result:
    try:
        status = int(argv[1]) if len(argv) > 1 else shell.status
    except ValueError:
        return fail(f"sh: exit: Illegal number: {argv[1]}", 2)
    shell.exited = status & 0xFF
    return Result(shell.exited)


def help_(shell: Shell, argv: list[str], stdin: str) -> Result:
    names = ", ".join(sorted(n for n in shell.commands if n not in ("[", "dash", "bash")))
    return ok(f"A simulated installed OS of the provisioner lab. Commands: {names}.\n")


# -- what runs other commands -------------------------------------------------------------------------------------


def sh(shell: Shell, argv: list[str], stdin: str) -> Result:
    sub = shell.subshell()
    if len(argv) > 2 and argv[1] == "-c":
        result = sub.run(argv[2])
    else:
        result = sub.run(stdin)
    if sub.exited is not None:
        result.status = sub.exited
    return result


def exec_(shell: Shell, argv: list[str], stdin: str) -> Result:
    result = shell.call(argv[1:], stdin)
    shell.exited = result.status  # the shell is replaced: nothing after exec runs
    return result


def timeout(shell: Shell, argv: list[str], stdin: str) -> Result:
    args = argv[1:]
    while args and args[0].startswith("-"):
        args = args[2:] if args[0] in ("-s", "-k") else args[1:]
    if len(args) < 2:
        return fail("timeout: missing operand", 125)
    return shell.call(args[1:], stdin)  # nothing here runs long enough to need killing


def command(shell: Shell, argv: list[str], stdin: str) -> Result:
    if len(argv) >= 3 and argv[1] in ("-v", "-V"):
        name = argv[2]
        if name in shell.commands:
            return ok((name if name in BUILTINS else f"/usr/bin/{name}") + "\n")
        return Result(1)
    return shell.call(argv[1:], stdin)


def _bre_to_python(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(nxt if nxt in "(){}+?|" else "\\" + nxt)
            i += 2
            continue
        out.append("\\" + c if c in "(){}+?|" else c)
        i += 1
    return "".join(out)


def sed(shell: Shell, argv: list[str], stdin: str) -> Result:
    scripts = [a for a in argv[1:] if a != "-e"]
    if len(scripts) != 1 or not scripts[0].startswith("s") or len(scripts[0]) < 4:
        return fail("sed: this system's sed knows only s/regex/replacement/[g]")
    script = scripts[0]
    delim = script[1]
    parts = re.split(rf"(?<!\\){re.escape(delim)}", script[2:])
    if len(parts) != 3:
        return fail("sed: -e expression #1: unterminated `s' command")
    pattern, replacement, flags = parts
    try:
        regex = re.compile(_bre_to_python(pattern))
    except re.error as exc:
        return fail(f"sed: -e expression #1: {exc}")
    replacement = re.sub(r"\\(\d)", r"\\g<\1>", replacement.replace("\\&", "\0")).replace("&", "\\g<0>")
    replacement = replacement.replace("\0", "&")
    count = 0 if "g" in flags else 1
    lines = stdin.splitlines(keepends=True)
    return ok("".join(regex.sub(replacement, line, count=count) for line in lines))


def readlink(shell: Shell, argv: list[str], stdin: str) -> Result:
    _, operands = _flags([a for a in argv[1:] if a != "--"])
    if not operands:
        return fail("readlink: missing operand")
    # Only canonicalisation: the lab's /dev has the disk under its kernel name and nothing links elsewhere.
    return ok("".join(posixpath.normpath(posixpath.join(shell.env.get("PWD", "/"), o)) + "\n" for o in operands))


# -- devices and network ------------------------------------------------------------------------------------------


def _table(lines: list[list[str]]) -> str:
    """Columns padded to their widest cell, as util-linux prints them."""
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "".join(" ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n" for line in lines)


def _columns(args: list[str], columns: list[str]) -> tuple[set[str], list[str], list[str]]:
    """(flag letters, columns, operands) of util-linux's table commands: `-o A,B` or `--output A,B` chooses columns."""
    flags: set[str] = set()
    operands = []
    i = 0
    while i < len(args):
        if args[i] in ("-o", "--output") and i + 1 < len(args):
            columns = args[i + 1].upper().split(",")
            i += 1
        elif args[i].startswith("-"):
            flags.update(args[i][1:])
        else:
            operands.append(args[i])
        i += 1
    return flags, columns, operands


def _blockdevs(ctx: Installed) -> list[dict]:
    size = f"{ctx.disk_bytes / (1 << 30):g}G"
    return [
        {"NAME": f"/dev/{ctx.disk}", "MAJ:MIN": "8:0", "RM": "0", "SIZE": size, "RO": "0", "TYPE": "disk",
         "MOUNTPOINTS": "", "parent": None},
        {"NAME": ctx.root_device, "MAJ:MIN": "8:1", "RM": "0", "SIZE": size, "RO": "0", "TYPE": "part",
         "MOUNTPOINTS": "/", "parent": f"/dev/{ctx.disk}"},
    ]  # fmt: skip


def lsblk(shell: Shell, argv: list[str], stdin: str) -> Result:
    flags, columns, devices = _columns(argv[1:], ["NAME", "MAJ:MIN", "RM", "SIZE", "RO", "TYPE", "MOUNTPOINTS"])
    rows = {row["NAME"]: row for row in _blockdevs(_ctx(shell))}
    unknown = [c for c in columns if c not in next(iter(rows.values()))]
    if unknown:
        return fail(f"lsblk: unknown column: {unknown[0]}")
    for device in devices:
        if device not in rows:
            return fail(f"lsblk: {device}: not a block device", 32)
    if "s" in flags:  # inverse: from each device (or each leaf) up to the disks under it
        starts = devices or [n for n in rows if not any(r["parent"] == n for r in rows.values())]
        order = []
        for name in starts:
            depth = 0
            while name:
                order.append((rows[name], depth))
                name, depth = rows[name]["parent"], depth + 1
    else:
        wanted = devices or [n for n, r in rows.items() if r["parent"] is None]
        order = [(rows[n], 0) for n in wanted]
        order += [(r, 1) for r in rows.values() if r["parent"] in wanted]
    lines = [] if "n" in flags else [columns]
    for row, depth in order:
        name = row["NAME"] if "p" in flags else row["NAME"].removeprefix("/dev/")
        if depth and "l" not in flags:
            name = "└─" + name
        lines.append([name if c == "NAME" else row[c] for c in columns])
    return ok(_table(lines))


def findmnt(shell: Shell, argv: list[str], stdin: str) -> Result:
    flags, columns, targets = _columns(argv[1:], ["TARGET", "SOURCE", "FSTYPE", "OPTIONS"])
    mount = {"TARGET": "/", "SOURCE": _ctx(shell).root_device, "FSTYPE": ROOT_FSTYPE, "OPTIONS": "rw,relatime"}
    if any(c not in mount for c in columns):
        return fail(f"findmnt: unknown column: {next(c for c in columns if c not in mount)}")
    if targets and targets[0] not in ("/", mount["SOURCE"]):
        return Result(1)
    lines = ([] if "n" in flags else [columns]) + [[mount[c] for c in columns]]
    return ok(_table(lines))


def _links(ctx: Installed) -> list[dict]:
    loopback = {"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host", "label": "lo"}
    links = [{"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "mtu": 65536,
              "operstate": "UNKNOWN", "link_type": "loopback", "address": "00:00:00:00:00:00",
              "addr_info": [loopback]}]  # fmt: skip
    for index, nic in enumerate(ctx.nics, start=2):
        flags = ["BROADCAST", "MULTICAST", "UP"]
        flags = flags + ["LOWER_UP"] if nic.link else ["NO-CARRIER", *flags]
        addresses = []
        if nic.ip and nic.link:
            addresses.append({"family": "inet", "local": nic.ip, "prefixlen": nic.prefix, "scope": "global",
                              "label": nic.name})  # fmt: skip
        links.append({"ifindex": index, "ifname": nic.name, "flags": flags, "mtu": 1500,
                      "operstate": "UP" if nic.link else "DOWN", "link_type": "ether", "address": nic.mac,
                      "addr_info": addresses})  # fmt: skip
    return links


def ip(shell: Shell, argv: list[str], stdin: str) -> Result:
    args = argv[1:]
    as_json = False
    while args and args[0].startswith("-"):
        as_json = as_json or args[0] in ("-j", "-json", "--json")
        args = args[1:]
    obj = args[0] if args else ""
    if not obj or not "address".startswith(obj) or args[1:2] not in ([], ["show"], ["list"]):
        return fail('This system\'s ip knows "ip [-j] addr [show]" only.', 255)
    links = _links(_ctx(shell))
    if as_json:
        return ok(json.dumps(links) + "\n")
    out = []
    for link in links:
        out.append(f"{link['ifindex']}: {link['ifname']}: <{','.join(link['flags'])}> mtu {link['mtu']} qdisc "
                   f"{'noqueue' if link['ifname'] == 'lo' else 'mq'} state {link['operstate']} group default "
                   "qlen 1000\n")  # fmt: skip
        out.append(f"    link/{link['link_type']} {link['address']} brd "
                   f"{'00:00:00:00:00:00' if link['ifname'] == 'lo' else 'ff:ff:ff:ff:ff:ff'}\n")  # fmt: skip
        for a in link["addr_info"]:
            out.append(f"    inet {a['local']}/{a['prefixlen']} scope {a['scope']} {a['label']}\n")
    return ok("".join(out))


BUILTINS = {"cd", "command", "echo", "exec", "exit", "false", "help", "printf", "pwd", "true"}
COMMANDS = {
    "cat": cat, "cd": cd, "command": command, "date": date, "echo": echo, "exec": exec_, "exit": exit_,
    "false": false, "findmnt": findmnt, "help": help_, "hostname": hostname, "id": id_, "ip": ip, "ls": ls,
    "lsblk": lsblk, "printf": printf, "pwd": pwd, "readlink": readlink, "sed": sed, "sh": sh, "bash": sh,
    "dash": sh, "timeout": timeout, "true": true, "uname": uname, "uptime": uptime, "whoami": whoami,
}  # fmt: skip


def shell_for(installed: Installed, user: str) -> Shell:
    """A login shell of ``user`` on the machine: in the user's home, with the variables a login sets."""
    _, _, home, login_shell = installed.user(user) or (0, 0, "/", "/bin/sh")
    env = {"HOME": home, "PWD": home, "USER": user, "LOGNAME": user, "SHELL": login_shell, "?": "0",
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}  # fmt: skip
    return Shell(COMMANDS, env, installed)
