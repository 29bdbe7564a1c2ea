"""Log lines never carry an install credential: the boot credential in answer-file URLs and on the kernel
command line, the callback token in callback URLs, the agent token as Bearer, and the registration answer."""

import io
import json
import logging

import pytest

from core.redaction import RedactingStream, install_record_factory, redact_text

BOOT = "0f3c9a2b7d1e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a"
AGENT = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"
CALLBACK = "1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"
KEY = "Zq3-x_8YwVb2nLk5sTg7hJd9fRe1cXa0mPo4uIy6tE"


@pytest.mark.parametrize(
    "line",
    [
        f'127.0.0.1:5123 - - [06/Dec/2026:01:02:03] "GET /i/{BOOT}/preseed.cfg HTTP/1.1" 200 4312',
        f'10.0.0.5:4431 - - [06/Dec/2026:01:02:03] "GET /i/{BOOT}/meta-data HTTP/1.1" 200 41',
        f'10.0.0.5:4431 - - [06/Dec/2026:01:02:03] "POST /i/{CALLBACK}/events/finished HTTP/1.1" 200 30',
        f"Not Found: /i/{BOOT}/vendor-data",
        f"kernel /images/memory-os/vmlinuz provisioner.url=http://cp provisioner.token={BOOT} console=ttyS0",
        f"PROVISIONER_FIRST_BOOT_URL=http://cp:8000/i/{CALLBACK}/events/finished",
        f"POST /api/agent/v1/register Authorization: Bearer {BOOT}",
        f"GET /api/agent/v1/tasks/next Authorization: Bearer {AGENT}",
        json.dumps({"install": 3, "hostname": "web01", "token": AGENT, "callback_token": CALLBACK}),
        json.dumps({"facts": {"nics": []}, "key": KEY}),
    ],
)
def test_every_credential_is_masked(line):
    clean = redact_text(line)
    for secret in (BOOT, AGENT, CALLBACK, KEY):
        assert secret not in clean
    assert "[token]" in clean


def test_ordinary_lines_are_left_alone():
    line = '{"hostname": "web01", "ssh_key": "ssh-ed25519 AAAA ops@example"} GET /installs/12/ 200'
    assert redact_text(line) == line


def test_daphne_access_log_and_log_records_are_masked(caplog):
    out = io.StringIO()
    RedactingStream(out).write(f'10.0.0.5:1 - - [x] "GET /i/{BOOT}/user-data HTTP/1.1" 200 9\n')
    assert BOOT not in out.getvalue() and "/i/[token]/user-data" in out.getvalue()
    install_record_factory()
    caplog.set_level(logging.INFO)
    logging.getLogger("provisioner.test").info("registration answer %s", {"token": AGENT})
    assert AGENT not in caplog.text


def test_the_logging_settings_install_the_redaction():
    """LOGGING_CONFIG, Django's hook run by django.setup() before any app loads, applies LOGGING and redacts
    every record as it is made: a handler the settings never heard of (a library's, here) sees no token."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    before = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    try:
        import_string(settings.LOGGING_CONFIG)(settings.LOGGING)
        logging.getLogger("rq.worker").addHandler(handler)
        logging.getLogger("rq.worker").warning("GET /i/%s/user-data", BOOT)
    finally:
        logging.getLogger("rq.worker").removeHandler(handler)
        logging.setLogRecordFactory(before)
    assert "/i/[token]/user-data" in out.getvalue() and BOOT not in out.getvalue()
