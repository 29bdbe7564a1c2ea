"""What a task hands back: success with its output, or a failure with a CamelCase reason and a message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# The contract asks for "last lines"; a bound keeps a chatty script from making the result request huge, while
# leaving room for the inventory task's facts JSON (one line, about 200 bytes a disk).
OUTPUT_TAIL_LINES = 200
OUTPUT_TAIL_CHARS = 64 * 1024
# A message quoting a tool's complaint can run long; the evidence belongs in the output, the message stays short
# enough for any control plane to accept (a rejected result would leave the install waiting).
MESSAGE_CHARS = 2000


def tail(text: str, lines: int = OUTPUT_TAIL_LINES, chars: int = OUTPUT_TAIL_CHARS) -> str:
    kept = "\n".join(text.splitlines()[-lines:])
    return kept[-chars:]


class TaskFailed(Exception):
    """Raised by a task to end it with a machine-readable reason and a message for people. ``retryable``: the
    failure is transient (the network stayed away past the task's own retries, a device was busy), so the same
    task may well succeed later; the control plane decides by the step's policy whether to hand out a retry."""

    def __init__(self, reason: str, message: str, output: str = "", *, retryable: bool = False):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.output = output
        self.retryable = retryable


class TaskAborted(Exception):
    """The install ended while the task ran (401): stop now, nobody is listening for the result."""


@dataclass
class TaskResult:
    ok: bool
    reason: str = ""
    message: str = ""
    output: str = ""
    retryable: bool = False
    # Run after the result has been delivered (reboot, poweroff): the contract says report first, then act.
    then: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def body(self) -> dict:
        message = self.message if len(self.message) <= MESSAGE_CHARS else self.message[: MESSAGE_CHARS - 1] + "…"
        return {
            "ok": self.ok,
            "reason": self.reason,
            "message": message,
            "output": tail(self.output),
            "retryable": self.retryable,
        }

    @classmethod
    def from_body(cls, body: dict) -> TaskResult:
        return cls(
            ok=bool(body.get("ok")),
            reason=str(body.get("reason", "")),
            message=str(body.get("message", "")),
            output=str(body.get("output", "")),
            retryable=bool(body.get("retryable")),
        )

    @classmethod
    def failed(cls, reason: str, message: str, output: str = "", *, retryable: bool = False) -> TaskResult:
        return cls(ok=False, reason=reason, message=message, output=output, retryable=retryable)
