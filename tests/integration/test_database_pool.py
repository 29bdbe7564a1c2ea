"""With the connection pool (DATABASE_POOL_MAX, recommended in production), a database failover or
restart costs no request: a pooled connection the server ended is replaced when it is drawn."""

import json
import urllib.request

import pytest
from django.db import connection

from tests.servers import Daphne

pytestmark = pytest.mark.slow


def database_ok(server) -> bool:
    try:
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as response:
            report = json.load(response)
    except urllib.error.HTTPError as exc:  # 503: something else is down (no worker here); read the body
        report = json.load(exc)
    return report["database"]["ok"]


def test_pooled_connections_ended_by_the_server_are_replaced(transactional_db, tmp_path):
    server = Daphne(tmp_path, DATABASE_POOL_MAX="4")
    server.start()
    try:
        assert all(database_ok(server) for _ in range(4))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 1  # the pool's connections
        assert [database_ok(server) for _ in range(4)] == [True] * 4
    finally:
        server.stop()
