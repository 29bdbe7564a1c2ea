"""SSH in the lab, server side (asyncssh): the site's jump host, and the SSH server of each installed machine.

The jump host (:class:`JumpHost`) authenticates one key, has no shell, and forwards TCP (OpenSSH's ProxyJump,
direct-tcpip) only to the lab machines' SSH addresses; everything else is refused and logged.

A machine's server (:class:`MachineSshd`) runs only while the machine runs its installed OS and authenticates as
OpenSSH would with the files the install left in the machine's root (``target/``): the keys in the user's
``~/.ssh/authorized_keys`` (home from ``/etc/passwd``), and user certificates signed by a key of the file that
``TrustedUserCAKeys`` names in ``/etc/ssh/sshd_config`` or ``sshd_config.d/*.conf``, whose principals include the
login user and whose validity covers now. Sessions get the lab's simulated shell (:mod:`provisioner.lab.shell`),
interactive with a PTY or one command per exec request.

All servers share one event loop in a daemon thread; the lab's threads call ``start()``/``stop()``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import asyncssh

from provisioner.lab.commands import Installed, shell_for

log = logging.getLogger(__name__)

# start()/stop() of a server wait this long for the loop: binding a socket or aborting connections is instant.
LOOP_CALL_TIMEOUT_S = 10
# What a PTY session reads at once; keystrokes come one or a few at a time.
READ_CHUNK = 4096

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="lab-ssh", daemon=True).start()
        return _loop


def _call(coro):
    return asyncio.run_coroutine_threadsafe(coro, _event_loop()).result(LOOP_CALL_TIMEOUT_S)


# -- keys ---------------------------------------------------------------------------------------------------------


def _write_private(path: Path, key: asyncssh.SSHKey, comment: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key.set_comment(comment)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())


def load_or_create_key(path: Path, comment: str) -> asyncssh.SSHKey:
    """The ed25519 key at ``path`` (its public half beside it, ``.pub``), made on first use."""
    if not path.exists():
        _write_private(path, asyncssh.generate_private_key("ssh-ed25519"), comment)
    return asyncssh.read_private_key(path)


def public_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


def _authorized(lines: list[str]) -> asyncssh.SSHAuthorizedKeys | None:
    """What sshd would accept of these authorized_keys lines: one it cannot parse is skipped, not fatal. None when
    nothing is left (asyncssh then asks the server's callbacks, which accept nothing)."""
    good = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            asyncssh.import_authorized_keys(line)
        except (ValueError, asyncssh.KeyImportError):
            continue
        good.append(line)
    return asyncssh.import_authorized_keys("\n".join(good) + "\n") if good else None


class _Listener:
    """A server on the shared loop: start() binds, stop() stops listening and drops every connection."""

    def __init__(self, address: str, port: int):
        self.address, self.port = address, port
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self.connections: set[asyncssh.SSHServerConnection] = set()

    async def _listen(self) -> asyncssh.SSHAcceptor:
        raise NotImplementedError

    def start(self):
        self._acceptor = _call(self._listen())
        if not self.port:
            self.port = self._acceptor.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            _call(self._close(acceptor))

    async def _close(self, acceptor: asyncssh.SSHAcceptor) -> None:
        acceptor.close()
        for conn in list(self.connections):
            conn.abort()  # a power cut: no goodbye, the peer sees the connection lost
        self.connections.clear()
        await acceptor.wait_closed()

    @property
    def listening(self) -> bool:
        return self._acceptor is not None


class _Tracked(asyncssh.SSHServer):
    def __init__(self, listener: _Listener):
        self.listener = listener
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.listener.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self.conn)


# -- the jump host ------------------------------------------------------------------------------------------------


class _JumpServer(_Tracked):
    listener: JumpHost

    def begin_auth(self, username: str) -> bool:
        jump = self.listener
        self.conn.set_authorized_keys(_authorized([jump.authorized_key] if username == jump.username else []))
        return True

    def session_requested(self) -> bool:
        return False  # no shell, no commands: a jump host only forwards

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        jump = self.listener
        if jump.allowed(dest_host, dest_port):
            log.info("jump host: forwarding to %s:%s", dest_host, dest_port)
            return True
        jump.refused.append((dest_host, dest_port))
        log.warning("jump host: refused forwarding to %s:%s (not a lab machine's SSH)", dest_host, dest_port)
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"forwarding to {dest_host}:{dest_port} is not allowed"
        )


class JumpHost(_Listener):
    """The lab's bastion on ``address:port``: ``username`` with ``authorized_key`` may forward to the addresses
    ``allowed(host, port)`` accepts, and do nothing else."""

    def __init__(
        self,
        address: str,
        port: int,
        host_key: asyncssh.SSHKey,
        username: str,
        authorized_key: str,
        allowed: Callable[[str, int], bool],
    ):
        super().__init__(address, port)
        self.host_key, self.username, self.authorized_key, self.allowed = host_key, username, authorized_key, allowed
        self.refused: list[tuple[str, int]] = []  # (host, port) of every refused forwarding; tests read it

    async def _listen(self) -> asyncssh.SSHAcceptor:
        return await asyncssh.create_server(
            lambda: _JumpServer(self), self.address, self.port, server_host_keys=[self.host_key],
            allow_pty=False, agent_forwarding=False, x11_forwarding=False, password_auth=False,
            kbdint_auth=False,
        )  # fmt: skip


# -- an installed machine's sshd ----------------------------------------------------------------------------------

_TRUSTED_CA = re.compile(r"^\s*TrustedUserCAKeys\s+(\S+)", re.IGNORECASE | re.MULTILINE)


def trusted_ca_lines(installed: Installed) -> list[str]:
    """The CA keys sshd trusts for user certificates: the file TrustedUserCAKeys names (the main config first,
    then the drop-ins in name order, as `Include /etc/ssh/sshd_config.d/*.conf` reads them; the first value
    wins), or none."""
    configs = [installed.read("/etc/ssh/sshd_config") or ""]
    dropins = installed.path("/etc/ssh/sshd_config.d")
    if dropins is not None and dropins.is_dir():
        configs += [installed.read(f"/etc/ssh/sshd_config.d/{p.name}") or "" for p in sorted(dropins.glob("*.conf"))]
    for text in configs:
        match = _TRUSTED_CA.search(text)
        if match and match.group(1).lower() != "none":
            return (installed.read(match.group(1)) or "").splitlines()
    return []


class _MachineServer(_Tracked):
    listener: MachineSshd

    def begin_auth(self, username: str) -> bool:
        installed = self.listener.installed
        lines: list[str] = []
        user = installed.user(username)
        if user is not None:
            home = user[2]
            lines += (installed.read(f"{home}/.ssh/authorized_keys") or "").splitlines()
            # No AuthorizedPrincipalsFile: a certificate logs in as a user it names as a principal.
            quoted = username.replace('"', "")
            lines += [f'cert-authority,principals="{quoted}" {ca}' for ca in trusted_ca_lines(installed) if ca.strip()]
        self.conn.set_authorized_keys(_authorized(lines))
        return True


class MachineSshd(_Listener):
    """The installed OS's sshd on the machine's address; ``installed`` is what its shell sees."""

    def __init__(self, installed: Installed, address: str, port: int, host_key: asyncssh.SSHKey):
        super().__init__(address, port)
        self.installed, self.host_key = installed, host_key

    async def _listen(self) -> asyncssh.SSHAcceptor:
        return await asyncssh.create_server(
            lambda: _MachineServer(self), self.address, self.port, server_host_keys=[self.host_key],
            process_factory=self._session, encoding="utf-8", line_editor=False, agent_forwarding=False,
            x11_forwarding=False, password_auth=False, kbdint_auth=False, allow_scp=False,
        )  # fmt: skip

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        user = process.get_extra_info("username")
        shell = shell_for(self.installed, user)
        tty = process.get_terminal_type() is not None
        try:
            if process.command is not None:
                result = shell.run(process.command)
                for fd, text in result.chunks:
                    (process.stdout if fd == 1 else process.stderr).write(_crlf(text) if tty else text)
                status = shell.exited if shell.exited is not None else result.status
            elif tty:
                status = await _interactive(process, shell, user, self.installed)
            else:
                result = shell.run(await process.stdin.read())  # sh reading its script from stdin
                for fd, text in result.chunks:
                    (process.stdout if fd == 1 else process.stderr).write(text)
                status = result.status
        except (asyncssh.Error, ConnectionError):
            return
        process.exit(status)


HOST_KEY = "etc/ssh/ssh_host_ed25519_key"


def start_sshd(installed: Installed, address: str, port: int, *, disk: Path) -> tuple[MachineSshd, str]:
    """What an installed OS's ssh.service does at boot: make a host key at the first boot of a new install (none
    yet, or the disk written since it was made), then listen. Returns the server and the new key's fingerprint
    (blank when the key was there)."""
    path = installed.root / HOST_KEY
    if path.exists() and path.stat().st_mtime < disk.stat().st_mtime:
        path.unlink()
        path.with_name(path.name + ".pub").unlink(missing_ok=True)
    fresh = not path.exists()
    key = load_or_create_key(path, f"root@{installed.hostname()}")
    server = MachineSshd(installed, address, port, key).start()
    return server, key.get_fingerprint() if fresh else ""


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def _prompt(shell, user: str, installed: Installed) -> str:
    home, cwd = shell.env.get("HOME", "/"), shell.env.get("PWD", "/")
    where = "~" + cwd[len(home) :] if cwd == home or cwd.startswith(home.rstrip("/") + "/") else cwd
    uid = (installed.user(user) or (1000,))[0]
    return f"{user}@{installed.hostname().split('.')[0]}:{where}{'#' if uid == 0 else '$'} "


async def _interactive(process: asyncssh.SSHServerProcess, shell, user: str, installed: Installed) -> int:
    """A terminal line discipline and a prompt: echo, backspace, Ctrl-C drops the line, Ctrl-D on an empty line
    logs out; escape sequences (arrow keys) are ignored."""
    process.stdout.write(_prompt(shell, user, installed))
    line: list[str] = []
    escape = False
    previous = ""
    while True:
        try:
            data = await process.stdin.read(READ_CHUNK)
        except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived, asyncssh.SignalReceived):
            continue
        if not data:
            return shell.status
        out = []
        for char in data:
            char, previous = ("", char) if (char == "\n" and previous == "\r") else (char, char)
            if not char:
                continue  # the LF of a CR LF: one Enter
            if escape:
                escape = not (char.isalpha() or char == "~")  # CSI ... final byte
                continue
            if char == "\x1b":
                escape = True
            elif char in "\r\n":
                out.append("\r\n")
                text = "".join(line)
                line.clear()
                if text.strip():
                    result = shell.run(text)
                    out += [_crlf(text) for _, text in result.chunks]
                if shell.exited is not None:
                    out.append("logout\r\n")
                    process.stdout.write("".join(out))
                    return shell.exited
                out.append(_prompt(shell, user, installed))
            elif char in "\x7f\x08":
                if line:
                    line.pop()
                    out.append("\b \b")
            elif char == "\x03":
                line.clear()
                out.append("^C\r\n" + _prompt(shell, user, installed))
            elif char == "\x04":
                if not line:
                    process.stdout.write("".join(out) + "logout\r\n")
                    return 0
            elif char == "\x15":  # Ctrl-U: kill the line
                out.append("\b \b" * len(line))
                line.clear()
            elif char >= " ":
                line.append(char)
                out.append(char)
        process.stdout.write("".join(out))
