"""What a running task sees: its host, a way to report progress and log lines, and a stop signal."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from provisioner.agent.host import Host
from provisioner.agent.results import TaskAborted

# Lines kept while the control plane is unreachable; past this the oldest go, with a note saying how many.
MAX_PENDING_LOG_LINES = 2000
# Lines per progress request: a backlog after an outage goes out in several requests of bounded size.
MAX_LINES_PER_UPDATE = 200
# One line or message longer than this is cut: a binary blob on stdout must not make a request huge.
MAX_LINE_CHARS = 2000


@dataclass
class Snapshot:
    percent: int
    message: str
    log: list[str]


class ProgressChannel:
    """Progress of one task, written by the task thread and drained by the sender.

    Updates coalesce: while the network is down only the latest percent and message are kept, plus the log
    lines, so what is delivered on reconnect is current. Percent never goes backwards, even when a download
    has to start over.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._percent = 0
        self._message = ""
        self._log: list[str] = []
        self._dropped = 0
        self._dirty = False
        self._closed = False

    def update(self, percent: int | None = None, message: str | None = None) -> None:
        with self._lock:
            if percent is not None:
                self._percent = max(self._percent, min(100, max(0, int(percent))))
            if message is not None:
                self._message = message[:MAX_LINE_CHARS]
            self._dirty = True
            self._changed.notify_all()

    def log(self, line: str) -> None:
        with self._lock:
            self._log.append(line[:MAX_LINE_CHARS])
            if len(self._log) > MAX_PENDING_LOG_LINES:
                excess = len(self._log) - MAX_PENDING_LOG_LINES
                del self._log[:excess]
                self._dropped += excess
            self._dirty = True
            self._changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Until there is something to take, the task ended, or `timeout` passed."""
        with self._lock:
            if not self._dirty and not self._closed:
                self._changed.wait(timeout)

    def close(self) -> None:
        """The task ended: nothing more will come, so the sender need not wait for it."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()

    def take(self) -> Snapshot | None:
        """What is new since the last take, or None."""
        with self._lock:
            if not self._dirty:
                return None
            lines = self._log
            if self._dropped:
                lines = [f"[{self._dropped} log lines dropped while the control plane was unreachable]", *lines]
            snap = Snapshot(self._percent, self._message, lines[:MAX_LINES_PER_UPDATE])
            self._log, self._dropped = lines[MAX_LINES_PER_UPDATE:], 0
            self._dirty = bool(self._log)
            return snap

    def put_back(self, snap: Snapshot) -> None:
        """A snapshot that could not be delivered: its lines go back in front of anything newer."""
        with self._lock:
            self._log = snap.log + self._log
            self._dirty = True


class Context:
    def __init__(
        self,
        host: Host,
        channel: ProgressChannel | None = None,
        abort: threading.Event | None = None,
        retry_base_s: float = 1.0,
        identity=None,
    ):
        self.host = host
        # () -> (control plane URL, install token): the agent's own, for first_boot_callback.
        self.identity = identity
        self.channel = channel or ProgressChannel()
        self._abort = abort or threading.Event()
        # First delay of a task's own retries (write_image's resumes), set from the agent's --backoff-base.
        self.retry_base_s = retry_base_s

    def progress(self, percent: int | None = None, message: str | None = None) -> None:
        self.channel.update(percent, message)

    def log(self, line: str) -> None:
        self.channel.log(line)

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def sleep(self, seconds: float) -> None:
        """Sleep that ends early, with TaskAborted, when the install ends."""
        self._abort.wait(seconds)
        self.check_abort()

    def check_abort(self) -> None:
        if self._abort.is_set():
            raise TaskAborted("the install ended while the task was running")
