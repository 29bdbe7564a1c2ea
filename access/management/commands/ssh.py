import asyncio
import contextlib
import logging
import os
import signal
import sys
import termios
import tty

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from inventory.models import Machine

from ...errors import AccessError
from ...live import GroupLink
from ...models import SessionClient, SessionEnd
from ...terminal import SessionRefused, Terminal, open_session, shutdown_all


class Command(BaseCommand):
    help = (
        "An interactive shell on a machine through its site's jump hosts, as a recorded session exactly like the "
        "browser's terminal: manage.py ssh web01 --as alice --reason 'disk alert'. --as names the person (a "
        "technician or admin allowed by the site's session policy); the session logs in with a certificate "
        "signed for it alone. The shell's exit, the idle timeout or the session's maximum length end it."
    )

    def add_arguments(self, parser):
        parser.add_argument("host", help="The machine's hostname.")
        parser.add_argument(
            "--as", "--as-user", dest="as_user", required=True, metavar="USERNAME", help="Who opens the session."
        )
        parser.add_argument("--reason", default="", help="Why (required on protected machines).")
        parser.add_argument("--principal", default="", help="The login on the machine (default: the policy's).")

    def handle(self, *args, host, as_user, reason, principal, **options):
        # The terminal is the person's: log lines (asyncssh's connection chatter, the audit echo) would land in
        # the middle of their screen. Warnings still show; the audit log itself is in the database.
        for name in ("asyncssh", "audit"):
            logging.getLogger(name).setLevel(logging.WARNING)
        user = get_user_model().objects.filter(username=as_user).first()
        if user is None:
            raise CommandError(f"No user {as_user!r}.")
        machine = Machine.objects.select_related("rack__site").filter(hostname=host).first()
        if machine is None:
            raise CommandError(f"Unknown machine {host!r}.")
        try:
            session = open_session(user, machine, reason=reason, client=SessionClient.CLI, principal=principal)
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        except SessionRefused as exc:
            raise CommandError(exc.message) from None
        ended = asyncio.run(_run(session.pk))
        if ended.end_reason == SessionEnd.FAILED:
            raise CommandError(ended.end_message)
        note = ended.get_end_reason_display() + (f": {ended.end_message}" if ended.end_message else "")
        self.stderr.write(f"[session {ended.pk} ended, {note}]")


async def _run(session_id: int):
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    interactive = os.isatty(fd_in)
    loop = asyncio.get_running_loop()
    link: GroupLink | None = None

    async def on_output(data: bytes) -> None:
        os.write(fd_out, data)
        if link is not None:
            await link.output(data)

    def typed() -> None:
        try:
            data = os.read(fd_in, 65536)
        except OSError:
            data = b""
        if data:
            asyncio.ensure_future(term.write(data))
            return
        loop.remove_reader(fd_in)
        if not interactive:
            asyncio.ensure_future(term.write(b"\x04"))  # end of input: the shell's EOF (Ctrl-D on its PTY)

    term = Terminal(session_id, on_output=on_output, on_end=lambda session: None)
    saved = termios.tcgetattr(fd_in) if interactive else None
    signals = [signal.SIGTERM, signal.SIGHUP] + ([] if interactive else [signal.SIGINT])
    try:
        if interactive:
            # Raw from the start (and not flushing what was typed): typeahead waits for the shell.
            tty.setraw(fd_in, termios.TCSANOW)
        try:
            await term.start(*_size(fd_in if interactive else fd_out))
        except AccessError:
            return await term.wait()
        link = GroupLink(term)
        with contextlib.suppress(Exception):  # without a channel layer the session still runs, unwatched
            await link.join()
        if interactive:
            loop.add_signal_handler(signal.SIGWINCH, lambda: asyncio.ensure_future(term.resize(*_size(fd_in))))
        for sig in signals:
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(shutdown_all("manage.py ssh was stopped")))
        loop.add_reader(fd_in, typed)
        ended = await term.wait()
    finally:
        loop.remove_reader(fd_in)
        for sig in [*signals, signal.SIGWINCH]:
            loop.remove_signal_handler(sig)
        if saved is not None:
            termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
    await link.ended(ended)
    return ended


def _size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
        return size.columns, size.lines
    except OSError:
        return 80, 24
