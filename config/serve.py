"""Run daphne with install tokens masked in its access log: `python -m config.serve -b 127.0.0.1 -p 8000`.

Takes daphne's own arguments; the application defaults to config.asgi:application.

A stop is bounded: daphne cancels every open request and socket on SIGTERM and then waits, without a
limit, for all of them to end, so one that does not end holds the restart (a deploy, or systemd's stop)
for good. SERVE_STOP_GRACE_S after the stop began, whatever is left is dumped to stderr (every thread's
stack, to find out what would not end) and the process exits.
"""

import asyncio
import faulthandler
import os
import sys
import threading

from daphne import http_protocol
from daphne.cli import CommandLineInterface

from core.redaction import RedactingStream


class RawBodyRequest(http_protocol.WebRequest):
    """Daphne's request without Twisted's form parsing. Twisted would parse every POST's Content-Type
    with the email package and a form body into request.args, which daphne never reads (the ASGI app
    gets the raw body, and Django parses forms itself): about 15 % of the CPU of an agent progress
    report, and a second copy of every large form upload in memory."""

    def __init__(self, *args, **kwargs):
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)


def use_raw_bodies() -> None:
    http_protocol.WebRequest = RawBodyRequest  # daphne's HTTPFactory builds its requests from this name


# Seconds daphne gets to end its requests and sockets once a stop began: long polls end within 30 s,
# and systemd's default stop timeout is 90 s.
STOP_GRACE_S = float(os.environ.get("SERVE_STOP_GRACE_S", "45"))


def bound_the_stop(grace_s: float = STOP_GRACE_S) -> None:
    """When the reactor begins to stop, give it ``grace_s``, then dump every thread's stack and exit."""
    from twisted.internet import reactor  # daphne.server installed the asyncio reactor on import (above)

    def watchdog() -> None:
        threading.Event().wait(grace_s)
        sys.stderr.write(f"daphne did not stop within {grace_s:g} s; what was still running:\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(all_threads=True)
        loop = getattr(reactor, "_asyncioEventloop", None)
        try:  # the coroutines that would not end; read from this thread, unlocked: a last look, best effort
            for task in list(asyncio.all_tasks(loop)) if loop is not None else []:
                task.print_stack(limit=8, file=sys.stderr)
        except RuntimeError as exc:  # the loop's task set changed while read
            sys.stderr.write(f"(tasks not listed: {exc})\n")
        sys.stderr.flush()
        os._exit(1)

    def start() -> None:
        threading.Thread(target=watchdog, name="stop-watchdog", daemon=True).start()

    reactor.addSystemEventTrigger("before", "shutdown", start)


def end_ssh_sessions_first() -> None:
    """On a stop, end the SSH sessions this process holds as ``shutdown`` (recording closed, row and audit
    written) before daphne cancels their sockets; otherwise they would wait for the stale sweep."""
    from twisted.internet import defer, reactor

    def end_them():
        # Imported here: Django is set up once daphne has loaded the application, not when this module loads.
        from access.terminal import shutdown_all

        return defer.Deferred.fromFuture(asyncio.ensure_future(shutdown_all()))

    reactor.addSystemEventTrigger("before", "shutdown", end_them)


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a.endswith(":application") for a in argv):
        argv.append("config.asgi:application")
    sys.stdout = RedactingStream(sys.stdout)
    use_raw_bodies()
    bound_the_stop()
    end_ssh_sessions_first()
    CommandLineInterface().run(argv)


if __name__ == "__main__":
    main()
