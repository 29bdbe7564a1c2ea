"""SSH sessions' pages and REST endpoints: who may see which recording (page, cast, API), search by text,
the replay page's policy, the machine page's terminal panel, and an admin's "end" from the page and the API.
Rows and recordings are made here; the sessions themselves run against real sshd in test_terminal_ws.py."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from access.models import SessionPolicy, ShellSession
from accounts.api_tokens import create_token
from audit.models import AuditEntry
from audit.service import Actor
from core.asciicast import CastRecorder
from inventory.models import MachineStatus
from tests.conftest import make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def recordings(settings, tmp_path):
    settings.SSH_RECORDING_DIR = tmp_path / "ssh"


@pytest.fixture
def people():
    return {
        "tina": user_with_role("technician", "tina"),
        "theo": user_with_role("technician", "theo"),
        "ada": user_with_role("admin", "ada"),
        "vic": user_with_role("viewer", "vic"),
    }


def recorded(machine, user, *, shown: str, ended: bool = True) -> ShellSession:
    session = ShellSession.objects.create(
        machine=machine,
        hostname=machine.hostname,
        site=machine.rack.site,
        opened_by=user,
        opened_by_label=user.get_username(),
        client="browser",
        principal="root",
        via="bastion-1",
        transcript=f"$ {shown}\n",
        ended_at=timezone.now() if ended else None,
        end_reason="exited" if ended else "",
    )
    recorder = CastRecorder(session.cast_path, title="t", max_bytes=100_000, width=100, height=30)
    recorder.output(f"$ {shown}\r\n".encode())
    recorder.input(b"exit\r")
    recorder.close()
    return session


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api(user) -> Client:
    _, key = create_token(user, "script", actor=Actor.for_user(user))
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


@pytest.fixture
def machine():
    return make_machine(make_rack(make_site(slug="dc1")), hostname="web-01", status=MachineStatus.DEPLOYED)


def test_a_technician_reads_only_their_own_recordings_an_admin_all_a_viewer_none(people, machine):
    tinas = recorded(machine, people["tina"], shown="uptime")
    theos = recorded(machine, people["theo"], shown="cat /etc/shadow")
    urls = lambda s: (f"/ssh-sessions/{s.pk}/", f"/ssh-sessions/{s.pk}/cast")  # noqa: E731
    api_urls = lambda s: (f"/api/v1/ssh-sessions/{s.pk}", f"/api/v1/ssh-sessions/{s.pk}/cast")  # noqa: E731

    tina, tina_api = browser(people["tina"]), api(people["tina"])
    for url in urls(tinas):
        assert tina.get(url).status_code == 200
    for url in (*urls(theos), *api_urls(theos)):
        assert (tina if url.startswith("/ssh") else tina_api).get(url).status_code == 403, url
    assert b"uptime" in b"".join(tina.get(f"/ssh-sessions/{tinas.pk}/cast").streaming_content)
    listing = tina.get("/ssh-sessions/").content.decode()
    assert f"/ssh-sessions/{tinas.pk}/" in listing and f"/ssh-sessions/{theos.pk}/" not in listing
    assert [s["id"] for s in tina_api.get("/api/v1/ssh-sessions").json()["results"]] == [tinas.pk]

    ada, ada_api = browser(people["ada"]), api(people["ada"])
    for url in urls(theos):
        assert ada.get(url).status_code == 200
    for url in api_urls(theos):
        assert ada_api.get(url).status_code == 200
    assert {s["id"] for s in ada_api.get("/api/v1/ssh-sessions").json()["results"]} == {tinas.pk, theos.pk}

    vic, vic_api = browser(people["vic"]), api(people["vic"])
    for url in (*urls(tinas), "/ssh-sessions/"):
        assert vic.get(url).status_code == 403
    assert vic_api.get("/api/v1/ssh-sessions").status_code == 403
    assert vic_api.post("/api/v1/machines/web-01/ssh-sessions", {}, content_type="application/json").status_code == 403
    assert b"SSH sessions" not in vic.get("/machines/web-01/").content


def test_recordings_are_found_by_the_text_shown_and_filtered_by_user_and_machine(people, machine):
    other = make_machine(machine.rack, hostname="db-01", position_u=5, status=MachineStatus.DEPLOYED)
    first = recorded(machine, people["tina"], shown="systemctl restart nginx")
    second = recorded(other, people["theo"], shown="df -h")
    ada = browser(people["ada"])
    found = ada.get("/ssh-sessions/?q=RESTART+nginx").content.decode()
    assert f"/ssh-sessions/{first.pk}/" in found and f"/ssh-sessions/{second.pk}/" not in found
    by_user = ada.get("/ssh-sessions/?user=theo").content.decode()
    assert f"/ssh-sessions/{second.pk}/" in by_user and f"/ssh-sessions/{first.pk}/" not in by_user
    ada_api = api(people["ada"])
    assert [s["id"] for s in ada_api.get("/api/v1/ssh-sessions?machine=db-01").json()["results"]] == [second.pk]
    assert [s["id"] for s in ada_api.get("/api/v1/ssh-sessions?q=df%20-h").json()["results"]] == [second.pk]
    assert ada_api.get("/api/v1/ssh-sessions?state=sideways").status_code == 400
    assert ada_api.get("/api/v1/ssh-sessions?q=%00").status_code == 400
    assert ada.get("/ssh-sessions/?q=%00").status_code == 400


def test_the_replay_page_loads_the_player_under_a_policy_that_allows_only_webassembly_more(people, machine):
    session = recorded(machine, people["tina"], shown="hostname")
    page = browser(people["tina"]).get(f"/ssh-sessions/{session.pk}/")
    assert b"asciinema-player-3.18.0.min.js" in page.content
    assert f'data-replay="/ssh-sessions/{session.pk}/cast"'.encode() in page.content
    policy = page["Content-Security-Policy"]
    assert "script-src 'self' 'wasm-unsafe-eval';" in policy
    assert "'unsafe-eval'" not in policy.replace("'wasm-unsafe-eval'", "")
    assert b"bastion-1" in page.content  # through which bastion
    listing = browser(people["tina"]).get("/ssh-sessions/")
    assert "wasm" not in listing["Content-Security-Policy"]


def test_the_machine_page_offers_a_terminal_on_deployed_machines_and_asks_why_on_protected_ones(people, machine):
    tina = browser(people["tina"])
    page = tina.get("/machines/web-01/").content.decode()
    assert 'href="/machines/web-01/terminal/"' in page and "you will be asked why" not in page
    machine.protected = True
    machine.save()
    assert "you will be asked why" in tina.get("/machines/web-01/").content.decode()
    terminal = tina.get("/machines/web-01/terminal/")
    assert b'data-terminal="/ws/machines/web-01/terminal/"' in terminal.content
    assert b'name="reason" required' in terminal.content
    assert "style-src 'self' 'unsafe-inline'" in terminal["Content-Security-Policy"]

    ready = make_machine(machine.rack, hostname="new-01", position_u=9, status=MachineStatus.READY)
    assert "A terminal opens on a deployed machine; new-01 is ready." in tina.get("/machines/new-01/").content.decode()
    assert b"data-terminal=" not in tina.get(f"/machines/{ready.hostname}/terminal/").content
    policy = SessionPolicy.for_site(machine.rack.site)
    policy.min_role = "admin"
    policy.save()
    assert "allows terminals from the admin role up" in tina.get("/machines/web-01/").content.decode()


def test_an_admin_ends_an_open_session_from_the_page_and_the_api_audited(people, machine):
    session = recorded(machine, people["tina"], shown="top", ended=False)
    tina = browser(people["tina"])
    assert tina.post(f"/ssh-sessions/{session.pk}/end").status_code == 403
    assert api(people["tina"]).post(f"/api/v1/ssh-sessions/{session.pk}/end").status_code == 403
    ada = browser(people["ada"])
    open_now = ada.get("/ssh-sessions/").content.decode()
    assert f"/ssh-sessions/{session.pk}/watch" in open_now and f"/ssh-sessions/{session.pk}/end" in open_now
    assert f"/ssh-sessions/{session.pk}/watch" not in tina.get("/ssh-sessions/").content.decode()

    csrf = Client(enforce_csrf_checks=True)
    csrf.force_login(people["ada"])
    assert csrf.post(f"/ssh-sessions/{session.pk}/end").status_code == 403  # no CSRF token
    response = ada.post(f"/ssh-sessions/{session.pk}/end")
    assert response.status_code == 302
    # No process holds this row (no heartbeat): ending it marks it ended at once.
    session.refresh_from_db()
    assert session.end_reason == "ended" and session.ended_by == people["ada"]
    entry = AuditEntry.objects.get(action="ssh.session.end")
    assert entry.actor_label == "ada" and entry.details["session"] == session.pk
    # The audit log links each ssh.session.* entry to the replay.
    assert f'href="/ssh-sessions/{session.pk}/"' in ada.get("/audit/?action=ssh.session").content.decode()
    again = api(people["ada"]).post(f"/api/v1/ssh-sessions/{session.pk}/end")
    assert again.status_code == 200 and again.json()["end_reason"] == "ended"
    assert AuditEntry.objects.filter(action="ssh.session.end").count() == 1


def test_opening_through_the_api_applies_the_policy_and_names_the_websocket(people, machine):
    machine.protected = True
    machine.save()
    tina_api = api(people["tina"])
    refused = tina_api.post("/api/v1/machines/web-01/ssh-sessions", {}, content_type="application/json")
    assert refused.status_code == 409
    assert "give a reason" in refused.json()["detail"]
    assert tina_api.post("/api/v1/machines/nope/ssh-sessions", {}, content_type="application/json").status_code == 404
    bad = tina_api.post("/api/v1/machines/web-01/ssh-sessions", {"reason": 7}, content_type="application/json")
    assert bad.status_code == 400 and bad.json()["field"] == "reason"
