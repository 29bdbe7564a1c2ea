"""Masks install credentials in text bound for logs.

Installers fetch `/i/<boot credential>/preseed.cfg` and call back to `/i/<callback token>/events/...`,
so both are part of request paths, and access logs and Django's "Not Found" warnings would print them;
the agent presents its boot credential and then its agent token as `Bearer`; the registration answer
carries the agent and callback tokens (and the agent's key) as JSON. Every log line passes through here.
"""

import logging
import logging.config
import re

_PATTERNS = [
    (re.compile(r"/i/[A-Za-z0-9_-]{16,128}(?=/|\b)"), "/i/[token]"),
    (re.compile(r"(provisioner\.token=)\S+"), r"\1[token]"),
    # A virtual media ISO's name is no token, but the ISO holds the boot credential until the machine spends it.
    (re.compile(r"(/boot/media/\d+-)[0-9a-f]{40}"), r"\1[name]"),
    (re.compile(r"((?:Bearer|Token) )[A-Za-z0-9._~+/=-]{8,}"), r"\1[token]"),
    (re.compile(r"""(["']?\b(?:token|callback_token|key)["']?\s*[:=]\s*["'])[^"']{8,}(["'])"""), r"\1[token]\2"),
]


def redact_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class RedactingStream:
    """A text stream wrapper for daphne's access log (written straight to stdout, not via logging)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact_text(text))

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def configure_logging(config: dict) -> None:
    """settings.LOGGING_CONFIG: apply settings.LOGGING, then redact every record when it is made."""
    logging.config.dictConfig(config)
    install_record_factory()


def install_record_factory() -> None:
    """Redact every log record when it is made, whichever handler or test capture receives it."""
    current = logging.getLogRecordFactory()
    if getattr(current, "redacts", False):
        return

    def factory(*args, **kwargs):
        record = current(*args, **kwargs)
        if isinstance(record.msg, str) and ("/i/" in record.msg or "token" in record.msg.lower() or record.args):
            try:
                message = record.getMessage()
            except Exception:  # a malformed log call: leave it to logging's own error report
                return record
            clean = redact_text(message)
            if clean != message:
                record.msg, record.args = clean, None
        return record

    factory.redacts = True
    logging.setLogRecordFactory(factory)
