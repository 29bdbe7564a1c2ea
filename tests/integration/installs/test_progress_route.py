"""Agent progress through the one path it takes (installs/ingest.py), as daphne serves it: the real ASGI
application, real PostgreSQL and Redis, through either store (asynchronous psycopg, as in production;
Django's connection on a thread, as ``make run`` uses with SQLite). It must answer as docs/agent-api.md
says, store every report once, and say 503 (not lose silently) when it cannot."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.db import connection
from django.utils import timezone

from config.asgi import application
from core import problems
from installs import ingest, progress
from installs.models import Event, EventKind, Install, Step, StepState
from tests.integration.installs.asgi_client import ROUTE, asgi_post, via_route
from tests.integration.installs.test_http import API, armed, bearer, post, register
from tests.integration.ui.conftest import user_with_role
from tests.integration.ui.test_consumers import communicator, receive_events, session_cookie
from tests.servers import Daphne

OK = {"ok": True, "progress_s": 1.0}


@pytest.fixture(autouse=True)
def _close_writers():
    yield
    ROUTE.close()  # the writers' connections, before the test database is flushed


@pytest.fixture(params=["psycopg", "django"])
def route(request):
    """The progress route with each store: PostgreSQL's own (production), and Django's connection on a
    thread (what ``make run`` uses for SQLite; here on the test's PostgreSQL)."""
    if request.param == "psycopg":
        yield ROUTE
        return
    route = ingest.AgentProgressRoute(ROUTE.app, store=ingest.DjangoStore)
    yield route
    route.close()


def running_task(lab, client):
    """An install whose agent has registered and holds a task: (install, token, task id)."""
    machine, install, boot = armed(lab, lab.image_profile())
    token = register(client, machine, boot)
    task = client.get(API + "tasks/next", **bearer(token)).json()["task"]
    return install, token, task["id"]


def test_answers_as_the_agent_api_documents(lab, client):
    install, token, task_id = running_task(lab, client)
    step_id = task_id.split(".")[0]
    cases = [
        (f"tasks/{task_id}/progress", {"percent": 10, "message": "ten", "log": ["a", "b"]}, token, 200, OK),
        (f"tasks/{task_id}/progress", {"percent": 150}, token, 400, "percent"),
        (f"tasks/{task_id}/progress", {"log": ["x"] * 1001}, token, 400, "log"),
        (f"tasks/{task_id}/progress", {"message": "m" * 2001}, token, 400, "message"),
        (f"tasks/{task_id}/progress", "not json", token, 400, "body"),
        (f"tasks/{task_id}/progress", "[1, 2]", token, 400, "body"),
        (f"tasks/{task_id}/progress", "", token, 400, ""),
        # Who asks is checked before the body.
        (f"tasks/{task_id}/progress", {"percent": 150}, "y" * 64, 401, problems.problem(401, "Unauthorized")),
        (f"tasks/{task_id}/progress", {"percent": 5}, "y" * 64, 401, problems.problem(401, "Unauthorized")),
        (f"tasks/{task_id}/progress", {"percent": 5}, "", 401, problems.problem(401, "Unauthorized")),
        ("tasks/garbage/progress", {}, token, 404, problems.problem(404, "No task garbage in this install.")),
        ("tasks/999999.1/progress", {}, token, 404, problems.problem(404, "No task 999999.1 in this install.")),
        # A digit to str.isdigit, not to int().
        ("tasks/\u00b23.1/progress", {}, token, 404, problems.problem(404, "No task \u00b23.1 in this install.")),
        (
            f"tasks/{step_id}.7/progress",
            {"percent": 5},
            token,
            409,
            problems.problem(409, f"Task {step_id}.7 is not the install's current task."),
        ),
        (f"tasks/{task_id}/progress", {"percent": 5, "message": "a\u0000b"}, token, 400, "message"),
        (f"tasks/{task_id}/progress", {"log": ["ok", "\ud800"]}, token, 400, "log.1"),
        (f"tasks/{task_id}/progress", "[" * 100000 + "]" * 100000, token, 400, "body"),
        (f"tasks/{task_id}/progress", '{"log": ' + "[" * 40 + "]" * 40 + "}", token, 400, "body"),
        (f"tasks/{task_id}/progress", '{"percent": NaN}', token, 400, "percent"),
        (f"tasks/{task_id}/progress", '{"message": "m", "junk": {"\\u0000": 1}}', token, 400, "junk"),
    ]
    for path, body, who, status, expected in cases:
        answer = via_route(path, body, who)[:2]
        if isinstance(expected, str):  # a refusal, naming the field at fault
            assert (answer[0], answer[1]["field"]) == (status, expected), (path, body[:100], answer)
        else:
            assert answer == (status, expected), (path, body[:100])
    for content_type in ("text/plain", ""):  # a JSON body must say it is one
        status, answer, _ = via_route(f"tasks/{task_id}/progress", "{}", token, content_type)
        assert (status, answer["field"]) == (415, "body") and "application/json" in answer["detail"], content_type
    assert via_route(f"tasks/{task_id}/progress", {}, None)[:2] == (401, problems.problem(401, "Unauthorized"))
    # The accepted report stored a progress event and a log event.
    kinds = list(Event.objects.filter(install=install, step__isnull=False).values_list("kind", flat=True))
    assert (kinds.count(EventKind.PROGRESS), kinds.count(EventKind.LOG)) == (1, 1)


def test_only_the_route_answers_progress_and_the_agent_api_documents_it(lab, client):
    install, token, task_id = running_task(lab, client)
    # Django serves no progress view: a request that bypassed the route would not be taken for stored.
    assert post(client, f"tasks/{task_id}/progress", {"percent": 5}, token).status_code == 404
    operation = client.get(API + "openapi.json").json()["paths"]["/api/agent/v1/tasks/{task_id}/progress"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProgressIn"
    }
    assert {"200", "400", "401", "404", "409", "413", "415", "503"} <= set(map(str, operation["responses"]))


def test_the_answers_ask_for_reports_less_often_while_the_writer_is_behind(settings):
    settings.AGENT_PROGRESS_S, settings.AGENT_PROGRESS_MAX_S = 2.0, 7.0
    writer = ingest._GroupWriter(asyncio.new_event_loop(), store=None)
    try:
        assert writer.progress_s() == 2.0
        writer.pending = [None] * (ingest.MAX_GROUP - 1)  # what one group carries: keeping up
        assert writer.progress_s() == 2.0
        writer.pending = [None] * (2 * ingest.MAX_GROUP)  # two groups behind
        assert writer.progress_s() == 6.0
        writer.pending = [None] * (10 * ingest.MAX_GROUP)
        assert writer.progress_s() == 7.0
    finally:
        writer.loop.close()


def test_refused_reports_write_nothing(lab, client, route):
    install, token, task_id = running_task(lab, client)
    before = Event.objects.count()
    for body, who, status in [({"percent": 101}, token, 400), ({"percent": 5}, "y" * 64, 401), ("{", token, 400)]:
        assert via_route(f"tasks/{task_id}/progress", body, who, app=route)[0] == status
    assert Event.objects.count() == before
    assert Step.objects.get(pk=task_id.split(".")[0]).progress == 0


def test_a_body_over_the_upload_limit_is_refused(lab, client, settings):
    install, token, task_id = running_task(lab, client)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    status, answer, _ = via_route(f"tasks/{task_id}/progress", {"log": ["x" * 100] * 20}, token)
    assert status == 413 and "1000 bytes" in answer["detail"]


def test_concurrent_reports_are_each_stored_once_in_order(lab, client, route):
    agents = [running_task(lab, client) for _ in range(4)]
    rounds = 15

    async def scenario():
        async def agent(token, task_id):
            answers = []
            for n in range(rounds):  # one agent reports one at a time, as the real one does
                body = {"percent": n + 1, "log": [f"l{n}"]}
                answers.append(await asgi_post(f"tasks/{task_id}/progress", body, token, app=route))
            return answers

        return await asyncio.gather(*(agent(token, task_id) for _, token, task_id in agents))

    results = asyncio.run(scenario())
    assert all(status == 200 for answers in results for status, _, _ in answers)
    for install, _, task_id in agents:
        step = Step.objects.get(pk=task_id.split(".")[0])
        assert (step.state, step.progress) == (StepState.DISPATCHED, rounds)
        progress = Event.objects.filter(install=install, kind=EventKind.PROGRESS, step=step).order_by("id")
        assert [e.data["percent"] for e in progress] == list(range(1, rounds + 1))
        logs = Event.objects.filter(install=install, kind=EventKind.LOG, step=step).order_by("id")
        assert [e.message for e in logs] == [f"l{n}" for n in range(rounds)]


def test_late_progress_of_a_finished_task_is_accepted_and_dropped(lab, client, route):
    install, token, task_id = running_task(lab, client)
    assert post(client, f"tasks/{task_id}/result", {"ok": True}, token).status_code == 200
    before = Event.objects.count()
    assert via_route(f"tasks/{task_id}/progress", {"percent": 99, "log": ["late"]}, token, app=route)[:2] == (200, OK)
    assert Event.objects.count() == before
    assert Step.objects.get(pk=task_id.split(".")[0]).state == StepState.SUCCEEDED


def test_reports_reach_a_dashboard_socket_once(lab, client, route):
    install, token, task_id = running_task(lab, client)
    cookie = session_cookie(user_with_role("viewer", "watcher"))

    async def scenario():
        socket = communicator("/ws/dashboard/", cookie)
        assert (await socket.connect())[0]
        path = f"tasks/{task_id}/progress"
        answers = await asyncio.gather(
            *(asgi_post(path, {"percent": n, "message": f"r{n}"}, token, app=route) for n in range(1, 9))
        )
        assert [status for status, _, _ in answers] == [200] * 8
        got = [e for e in await receive_events(socket, 8, timeout=5) if e["kind"] == EventKind.PROGRESS]
        stored = Event.objects.filter(install=install, kind=EventKind.PROGRESS, message__startswith="r")
        assert sorted(e["id"] for e in got) == sorted(
            await in_thread(lambda: list(stored.values_list("id", flat=True)))
        )
        assert sorted(e["message"] for e in got) == [f"r{n}" for n in range(1, 9)]
        assert await socket.receive_nothing(timeout=1.5)  # the sweep finds nothing more to send
        await socket.disconnect()
        await database_sync_to_async(close_connection)()  # the consumer's, on channels' database thread

    asyncio.run(scenario())


def close_connection():
    connection.close()  # resolved on the thread that runs it


async def in_thread(fn):
    """Run ``fn`` on a thread of its own with its own connection, closed after (a test must not leave
    a session behind: the test database is dropped at the end)."""

    def call():
        try:
            return fn()
        finally:
            connection.close()

    return await asyncio.get_running_loop().run_in_executor(None, call)


def terminate_progress_writers():
    """What a database restart does to the progress route's connection: this test database's only (other
    test sessions and a running provisioner use the same server and the same application name)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            [ingest.APPLICATION_NAME],
        )
        return cursor.fetchall()


def test_a_lost_database_connection_answers_503_and_the_next_report_is_stored(lab, client):
    install, token, task_id = running_task(lab, client)
    path = f"tasks/{task_id}/progress"

    async def scenario():
        assert (await asgi_post(path, {"percent": 1}, token))[0] == 200  # the writer now holds a connection
        assert await in_thread(terminate_progress_writers) == [(True,)]
        lost = await asgi_post(path, {"percent": 2, "message": "lost"}, token)
        again = await asgi_post(path, {"percent": 3, "message": "again"}, token)
        return lost, again

    (status, answer, headers), again = asyncio.run(scenario())
    assert status == 503 and headers[b"retry-after"] == b"1" and "send it again" in answer["detail"]
    assert again[0] == 200
    assert not Event.objects.filter(install=install, message="lost").exists()
    assert Event.objects.filter(install=install, message="again").count() == 1


def test_a_report_notes_when_the_agent_was_last_seen(lab, client, route):
    install, token, task_id = running_task(lab, client)
    long_ago = timezone.now() - timedelta(minutes=10)
    Install.objects.filter(pk=install.pk).update(agent_seen_at=long_ago)
    path = f"tasks/{task_id}/progress"

    async def scenario():
        def seen_at():
            return in_thread(lambda: Install.objects.get(pk=install.pk).agent_seen_at)

        assert (await asgi_post(path, {"percent": 3}, token, app=route))[0] == 200
        await asyncio.sleep(0.5)  # written after the answer, with the group's events out
        first = await seen_at()
        assert (await asgi_post(path, {"percent": 4}, token, app=route))[0] == 200
        await asyncio.sleep(0.5)
        return first, await seen_at()

    first, second = asyncio.run(scenario())
    assert first > long_ago + timedelta(minutes=9)
    assert second == first  # within the write interval a report leaves it alone (a query saved per report)


def http_post(base_url: str, path: str, body: bytes, token: str) -> tuple[int, dict]:
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request("POST", API + path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def post_together(base_url: str, requests: list[tuple[str, bytes, str]]) -> list[tuple[int, dict]]:
    """Each (path, body, token) on a connection of its own, all sent at the same moment."""
    answers: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def send(i, path, body, token):
        start.wait()
        answers[i] = http_post(base_url, path, body, token)

    threads = [threading.Thread(target=send, args=(i, *r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers


def test_one_bad_report_among_concurrent_ones_fails_only_itself_under_daphne(lab, client, tmp_path):
    agents = [running_task(lab, client) for _ in range(20)]
    bad_install, bad_token, bad_task = running_task(lab, client)
    requests = [
        (f"tasks/{task_id}/progress", json.dumps({"percent": 7, "message": f"ok {n}"}).encode(), token)
        for n, (_, token, task_id) in enumerate(agents)
    ]
    bad = json.dumps({"percent": 7, "message": "bad\u0000one"}).encode()
    requests.insert(10, (f"tasks/{bad_task}/progress", bad, bad_token))
    deep = ("[" * 100000 + "]" * 100000).encode()
    requests.append((f"tasks/{bad_task}/progress", deep, bad_token))
    server = Daphne(tmp_path)  # as deployed: python -m config.serve
    server.start()
    try:
        for _ in range(3):  # a few rounds: the reports of one round arrive together and share groups
            answers = post_together(server.url, requests)
            assert [a[0] for a in answers[:10] + answers[11:-1]] == [200] * 20, answers
            assert answers[10][0] == 400 and answers[10][1]["field"] == "message", answers[10]
            assert answers[-1][0] == 400 and answers[-1][1]["field"] == "body", answers[-1]
    finally:
        server.stop()
    for n, (install, _, task_id) in enumerate(agents):
        stored = Event.objects.filter(install=install, kind=EventKind.PROGRESS, message=f"ok {n}")
        assert stored.count() == 3
        assert Step.objects.get(pk=task_id.split(".")[0]).message == f"ok {n}"
    assert not Event.objects.filter(install=bad_install, kind=EventKind.PROGRESS).exists()
    assert Step.objects.get(pk=bad_task.split(".")[0]).message == ""


def test_a_group_that_fails_is_written_report_by_report_so_only_the_bad_one_fails(lab, client, route):
    """Whatever slipped past the checks: a report the database refuses fails alone, not its commit group."""
    agents = [running_task(lab, client) for _ in range(5)]
    bad_install, bad_token, bad_task = running_task(lab, client)
    reports = [
        progress.ProgressReport(task_id, 9, f"ok {n}", token=token) for n, (_, token, task_id) in enumerate(agents)
    ]
    reports.insert(2, progress.ProgressReport(bad_task, 9, "bad\x00one", token=bad_token))

    async def scenario():
        writer = route._writer()
        return await asyncio.gather(*(writer.submit(r) for r in reports))  # queued together: one group

    outcomes = asyncio.run(scenario())
    assert outcomes == [progress.Outcome.OK] * 2 + [ingest.UNSTORABLE] + [progress.Outcome.OK] * 3
    for n, (install, _, _) in enumerate(agents):
        assert Event.objects.filter(install=install, kind=EventKind.PROGRESS, message=f"ok {n}").count() == 1
    assert not Event.objects.filter(install=bad_install, kind=EventKind.PROGRESS).exists()


def test_other_methods_on_the_progress_path_get_a_405_problem(lab, client):
    _, token, task_id = running_task(lab, client)

    async def ask(method):
        headers = [(b"authorization", f"Bearer {token}".encode())]
        communicator = HttpCommunicator(application, method, f"{API}tasks/{task_id}/progress", headers=headers)
        return await communicator.get_response()

    for method in ("GET", "PUT", "TRACE"):
        response = asyncio.run(ask(method))
        headers = dict(response["headers"])
        assert response["status"] == 405 and headers.get(b"allow") == b"POST", (method, response)
        assert headers[b"content-type"] == b"application/problem+json", headers
        assert json.loads(response["body"])["field"] == "method"
