import sys
import time

from django.core.management.base import BaseCommand, CommandError

from inventory.models import Machine
from serialconsole.models import ConsoleSession
from serialconsole.recording import read_cast

#: Longest pause ``--play`` keeps between two events: a recording that sat idle for an hour plays in seconds.
PLAY_MAX_IDLE_S = 2.0


class Command(BaseCommand):
    help = (
        "A machine's serial-console sessions (newest first), or one session's recording: --cast prints it "
        "(asciicast v2, for asciinema and the like), --play replays it in this terminal."
    )

    def add_arguments(self, parser):
        parser.add_argument("hostname", nargs="?", help="list this machine's sessions")
        parser.add_argument("--cast", type=int, metavar="SESSION", help="print the session's recording")
        parser.add_argument("--play", type=int, metavar="SESSION", help="replay the session's output here")
        parser.add_argument("--limit", type=int, default=20)

    def handle(self, *args, hostname=None, cast=None, play=None, limit=20, **options):
        if cast is not None or play is not None:
            session = ConsoleSession.objects.filter(pk=cast if cast is not None else play).first()
            if session is None:
                raise CommandError(f"No console session {cast if cast is not None else play}.")
            if not session.cast_path.exists():
                raise CommandError(f"Console session {session.pk} has no recording (it never connected).")
            if cast is not None:
                self.stdout.write(session.cast_path.read_text(encoding="utf-8"), ending="")
                return
            try:
                _, events = read_cast(session.cast_path)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self._play(events)
            return
        if not hostname:
            raise CommandError("Name a machine, or give --cast or --play with a session id.")
        machine = Machine.objects.filter(hostname=hostname.lower()).first()
        if machine is None:
            raise CommandError(f"No machine named {hostname}.")
        sessions = ConsoleSession.objects.filter(machine=machine)[:limit]
        for s in sessions:
            ended = f"ended {s.ended_at:%Y-%m-%d %H:%M:%S} ({s.get_end_reason_display()})" if s.ended_at else "open"
            self.stdout.write(
                f"{s.pk:>6}  {s.started_at:%Y-%m-%d %H:%M:%S}  {s.opened_by_label:<16} {ended}  "
                f"{s.bytes_out} B out, {s.bytes_in} B typed"
            )
        if not sessions:
            self.stdout.write(f"{machine.hostname} has no console sessions.")

    def _play(self, events) -> None:
        at = 0.0
        for t, kind, text in events:
            if kind != "o":
                continue
            time.sleep(min(max(t - at, 0), PLAY_MAX_IDLE_S))
            at = t
            sys.stdout.write(text)
            sys.stdout.flush()
        sys.stdout.write("\r\n")
