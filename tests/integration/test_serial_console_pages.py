"""The serial console's pages, REST endpoints and command: who may see what, the console page's CSP, the
machine page's console panel, recordings replayed and downloaded; and the recorder itself."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from serialconsole.models import ConsoleSession, EndReason
from serialconsole.recording import CastRecorder, read_cast
from tests.conftest import make_bmc, make_machine
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def console_dir(settings, tmp_path):
    settings.CONSOLE_DIR = tmp_path / "console"


def as_role(client, role: str):
    client.force_login(user_with_role(role, f"{role}-1"))
    return client


def recorded_session(machine) -> ConsoleSession:
    session = ConsoleSession.objects.create(
        machine=machine, hostname=machine.hostname, driver="ipmi", opened_by_label="alice"
    )
    recorder = CastRecorder(session.cast_path, title="t", max_bytes=10_000)
    recorder.marker("alice has the keyboard")
    recorder.output(b"login: ")
    recorder.input(b"root\r")
    recorder.close()
    session.end_reason, session.cast_bytes, session.ended_at = EndReason.IDLE, recorder.size, timezone.now()
    session.save()
    return session


def test_the_console_page_is_for_technicians_with_inline_styles_for_xterm(client):
    machine = make_machine(hostname="c-01")
    make_bmc(machine, driver="ipmi")
    as_role(client, "viewer")
    assert client.get("/machines/c-01/console/").status_code == 403
    as_role(client, "technician")
    page = client.get("/machines/c-01/console/")
    assert page.status_code == 200
    assert b'data-console="/ws/machines/c-01/console/"' in page.content
    assert b"/static/vendor/xterm/xterm-6.0.0.js" in page.content
    policy = page["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in client.get("/machines/c-01/")["Content-Security-Policy"]


def test_the_machine_page_offers_the_console_only_where_the_driver_has_one(client):
    ipmi = make_machine(hostname="c-ipmi")
    make_bmc(ipmi, driver="ipmi")
    redfish = make_machine(hostname="c-redfish")
    make_bmc(redfish, driver="redfish")
    as_role(client, "technician")
    assert b"Open the serial console" in client.get("/machines/c-ipmi/").content
    page = client.get("/machines/c-redfish/").content.decode()
    assert "Open the serial console" not in page
    assert "c-redfish: the Redfish driver cannot do serial console." in page
    as_role(client, "viewer")
    assert b"Serial console" not in client.get("/machines/c-ipmi/").content


def test_a_recording_replays_and_downloads_for_technicians_only(client):
    machine = make_machine(hostname="c-02")
    session = recorded_session(machine)
    as_role(client, "viewer")
    for url in (f"/console-sessions/{session.pk}/", f"/console-sessions/{session.pk}/session.cast"):
        assert client.get(url).status_code == 403
    assert client.get("/api/v1/machines/c-02/console-sessions").status_code == 403
    as_role(client, "technician")
    page = client.get(f"/console-sessions/{session.pk}/")
    assert page.status_code == 200 and b"data-cast=" in page.content
    download = client.get(f"/console-sessions/{session.pk}/session.cast")
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert [json.loads(line)[1:] for line in lines[1:]] == [
        ["m", "alice has the keyboard"],
        ["o", "login: "],
        ["i", "root\r"],
    ]
    listing = client.get("/api/v1/machines/c-02/console-sessions").json()["results"]
    assert [(s["id"], s["opened_by"], s["end_reason"]) for s in listing] == [(session.pk, "alice", "idle")]
    cast = client.get(listing[0]["cast_url"])
    assert cast.status_code == 200 and cast["Content-Type"] == "application/x-asciicast"


def test_a_session_without_a_recording_says_so(client):
    machine = make_machine(hostname="c-03")
    session = ConsoleSession.objects.create(machine=machine, hostname="c-03", driver="ipmi", opened_by_label="a")
    as_role(client, "technician")
    assert b"has no recording" in client.get(f"/console-sessions/{session.pk}/").content
    missing = client.get(f"/api/v1/console-sessions/{session.pk}/cast")
    assert missing.status_code == 404 and "has no recording" in missing.json()["detail"]


def test_the_command_lists_sessions_and_prints_a_recording():
    machine = make_machine(hostname="c-04")
    session = recorded_session(machine)
    out = io.StringIO()
    call_command("console_sessions", "c-04", stdout=out)
    assert f"{session.pk}" in out.getvalue() and "alice" in out.getvalue() and "last viewer left" in out.getvalue()
    out = io.StringIO()
    call_command("console_sessions", "--cast", str(session.pk), stdout=out)
    assert out.getvalue() == session.cast_path.read_text()
    with pytest.raises(CommandError, match="No machine named nope"):
        call_command("console_sessions", "nope")
    with pytest.raises(CommandError, match="No console session 999999"):
        call_command("console_sessions", "--cast", "999999")


def test_the_recorder_keeps_split_utf8_whole_and_stops_at_its_limit(tmp_path):
    recorder = CastRecorder(tmp_path / "a.cast", title="t", max_bytes=400)
    text = "héllo ✓".encode()
    recorder.output(text[:2])  # "h" and half of "é"
    recorder.output(text[2:])
    recorder.output(b"x" * 500)  # past the limit: not written, marked
    recorder.output(b"later")
    recorder.close()
    _, events = read_cast(tmp_path / "a.cast")
    assert "".join(e[2] for e in events if e[1] == "o") == "héllo ✓"
    assert events[-1][1:] == ["m", "recording truncated"]
    assert recorder.truncated and recorder.size == (tmp_path / "a.cast").stat().st_size <= 400 + 100
