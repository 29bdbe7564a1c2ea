"""manage.py ssh in a pseudo-terminal, as a person runs it: a recorded session like the browser's, through the
real bastion to the real target; and ssh_ca printing and rotating the site's CA."""

from __future__ import annotations

import io
import os
import pty
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from access.ansi import plain
from access.models import SessionEnd, ShellSession, SiteCA
from audit.models import AuditEntry
from core.asciicast import read_cast
from tests.integration.ui.conftest import user_with_role

from .conftest import add_shell_target

ROOT = Path(__file__).resolve().parents[3]
HOSTNAME = socket.gethostname()


def read_until(fd: int, text: bytes, timeout: float = 10) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"{text!r} not seen in {seen!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            raise AssertionError(f"{text!r} not seen in {seen!r}") from None
        seen += chunk
    return seen


@pytest.mark.django_db(transaction=True)
def test_manage_py_ssh_in_a_terminal_is_recorded_like_the_browser_terminal(shell_site, shell_lab, tmp_path):
    machine = add_shell_target(shell_site, shell_lab, hostname="cli01")
    tech = user_with_role("technician")
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{connection.settings_dict['USER']}@{connection.settings_dict['HOST']}:"
        f"{connection.settings_dict['PORT'] or 5432}/{connection.settings_dict['NAME']}",
        "SSH_RECORDING_DIR": str(tmp_path),
    }
    main, child = pty.openpty()
    os.set_blocking(main, True)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "ssh", "cli01", "--as", tech.username, "--reason", "look"],
        cwd=ROOT, env=env, stdin=child, stdout=child, stderr=child, close_fds=True, start_new_session=True,
    )  # fmt: skip
    os.close(child)
    try:
        # Typed once the session is up (its recording exists), so no local echo of a terminal not yet raw counts.
        deadline = time.monotonic() + 10
        while not list(tmp_path.glob("session-*.cast")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.write(main, b"echo ready\r")
        read_until(main, b"ready\r\n")
        os.write(main, b"hostname\r")
        read_until(main, HOSTNAME.encode() + b"\r\n")
        os.write(main, b"exit\r")
        said = read_until(main, b"ended, the shell exited")
        assert proc.wait(10) == 0, said
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)

    session = ShellSession.objects.get()
    assert (session.client, session.opened_by_id, session.reason) == ("cli", tech.pk, "look")
    assert session.end_reason == SessionEnd.EXITED and HOSTNAME in session.transcript
    header, events = read_cast(tmp_path / f"session-{session.pk}.cast")
    assert header["title"] == f"{session.principal}@cli01" and header["env"] == {"TERM": "xterm-256color"}
    assert "".join(e[2] for e in events if e[1] == "i") == "echo ready\rhostname\rexit\r"
    shown = plain("".join(e[2] for e in events if e[1] == "o")).splitlines()
    assert HOSTNAME in shown and "ready" in shown and HOSTNAME in session.transcript.splitlines()
    assert [a.action for a in AuditEntry.objects.order_by("id") if a.action.startswith("ssh.session")] == [
        "ssh.session.open",
        "ssh.session.close",
    ]
    assert machine.pk == session.machine_id


@pytest.mark.django_db
def test_manage_py_ssh_refuses_with_a_clear_message(shell_site, shell_lab):
    add_shell_target(shell_site, shell_lab, hostname="cli02", protected=True)
    user_with_role("viewer", "vic")
    user_with_role("technician", "tess")
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("ssh", "cli02", "--as", "nobody")
    with pytest.raises(CommandError, match="vic may not open SSH sessions"):
        call_command("ssh", "cli02", "--as", "vic")
    with pytest.raises(CommandError, match="cli02 is protected: give a reason"):
        call_command("ssh", "cli02", "--as", "tess")
    with pytest.raises(CommandError, match="Unknown machine 'nope'"):
        call_command("ssh", "nope", "--as", "tess")
    assert not ShellSession.objects.exists()


@pytest.mark.django_db
def test_ssh_ca_prints_and_rotates_the_site_ca(shell_site):
    out = io.StringIO()
    call_command("ssh_ca", shell_site.slug, stdout=out)
    first = SiteCA.objects.get(site=shell_site).public_key
    assert out.getvalue() == first + "\n"
    out = io.StringIO()
    call_command("ssh_ca", shell_site.slug, "--rotate", stdout=out)
    rotated = SiteCA.objects.get(site=shell_site)
    assert out.getvalue() == f"{rotated.public_key}\n{first}\n" and rotated.public_key != first
    assert AuditEntry.objects.get(action="ssh.ca.rotate").actor_label.startswith("manage.py ssh_ca")
    assert "PRIVATE KEY" not in out.getvalue()
    with pytest.raises(CommandError, match="No site 'nope'"):
        call_command("ssh_ca", "nope")
