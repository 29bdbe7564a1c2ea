"""A test session touches only what it created. The machine's PostgreSQL and Redis are shared with other
checkouts, other test sessions and a running provisioner, so the suite claims one Redis database
(tests/redis_claim.py) and empties only that one, and reaches into PostgreSQL only within its own database.

The claim rules are tried on a Redis server of the test's own (a Unix socket in its temporary directory),
so refusing and taking over never involve anyone's real data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from core import queues
from installs import ingest
from tests import redis_claim
from tests.integration.installs.test_progress_route import terminate_progress_writers
from tests.redis_claim import MARKER, Claim, ClaimRefused, Owner

ROOT = Path(__file__).resolve().parents[2]


def test_a_database_holding_keys_of_someone_else_is_refused_and_left_alone(private_redis):
    conn = private_redis.client(0)
    conn.set("someone:else", "precious")
    with pytest.raises(ClaimRefused, match=r"holds 1 key\(s\) that no test session of provisioner wrote"):
        Claim(conn).take()
    with pytest.raises(ClaimRefused):
        Claim(conn).flush()  # flushing claims first: no way around the check
    assert conn.get("someone:else") == b"precious" and conn.get(MARKER) is None


def test_a_database_in_use_by_a_running_session_is_refused(private_redis):
    conn = private_redis.client(0)
    running = Claim(conn)
    running.take()
    conn.set("rq:queue:default", "its job")
    with pytest.raises(ClaimRefused, match=f"in use by another test session \\(pid {os.getpid()}"):
        Claim(conn).take()
    assert conn.get("rq:queue:default") == b"its job"
    running.flush()  # its own claim still holds
    assert conn.get("rq:queue:default") is None


def test_what_a_finished_session_left_is_taken_over(private_redis):
    conn = private_redis.client(0)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = Owner(Owner.this_process().host, int(ended.stdout), "0", "ended-session")
    conn.set(MARKER, gone.encode())
    conn.set("rq:job:left-behind", "x")
    claim = Claim(conn)
    claim.take()
    assert conn.get("rq:job:left-behind") is None
    assert Owner.decode(conn.get(MARKER)) == claim.owner


def test_a_flush_after_the_claim_was_lost_empties_nothing(private_redis):
    conn = private_redis.client(0)
    mine = Claim(conn)
    mine.take()
    conn.set(MARKER, Owner(Owner.this_process().host, os.getpid(), "", "another").encode())  # taken meanwhile
    conn.set("theirs", "x")
    with pytest.raises(ClaimRefused, match="no longer claimed by this test session"):
        mine.flush()
    assert conn.get("theirs") == b"x"


def test_sessions_on_different_databases_do_not_disturb_each_other(private_redis):
    one, two = Claim(private_redis.client(1)), Claim(private_redis.client(2))
    one.take()
    two.take()
    one.conn.set("one", "x")
    two.conn.set("two", "x")
    one.flush()
    assert one.conn.get("one") is None and two.conn.get("two") == b"x"


def test_the_suite_refuses_a_redis_database_it_does_not_own(private_redis):
    """The whole suite, as `make test` starts it, against a database holding someone's keys: it stops before
    any test with a message saying why, and the keys are untouched."""
    private_redis.client(3).set("make-run:queue", "a job someone is waiting for")
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "REDIS_URL": private_redis.url_for(3),
        # Another database name: were the claim missing, that session would not drop this one's test database.
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME'].removeprefix('test_')}_iso",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration/test_health.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no test session of provisioner wrote" in result.stdout + result.stderr
    assert private_redis.client(3).get("make-run:queue") == b"a job someone is waiting for"


def test_this_session_holds_the_claim_on_its_database():
    assert Owner.decode(queues.connection().get(MARKER)) == redis_claim.session_claim().owner


@pytest.mark.django_db
def test_terminating_the_progress_writers_spares_other_databases():
    """A connection of the same application name to another database (another session's, a running
    provisioner's) outlives the test that terminates this database's writers."""
    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname="postgres",
        application_name=ingest.APPLICATION_NAME,
        autocommit=True,
    ) as bystander:
        terminate_progress_writers()
        assert bystander.execute("SELECT 1").fetchone() == (1,)
    connection.close()
