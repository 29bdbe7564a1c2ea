"""Who may read /metrics: the metrics token, or an address in the allow-list; everyone else is refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import Client

from tests.scrape import scrape, value

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-7f3a9c"
OUTSIDE = "203.0.113.9"


def get(remote: str = "127.0.0.1", auth: str | None = None):
    headers = {"REMOTE_ADDR": remote}
    if auth is not None:
        headers["HTTP_AUTHORIZATION"] = auth
    return Client().get("/metrics", **headers)


def test_by_default_this_host_may_scrape_and_others_may_not(settings):
    settings.METRICS_TOKEN = ""
    assert get("127.0.0.1").status_code == 200
    assert get("::1").status_code == 200
    refused = get(OUTSIDE)
    assert refused.status_code == 403
    assert "METRICS_ALLOWED_CIDRS" in refused.json()["detail"]
    samples = scrape()
    assert value(samples, "provisioner_metrics_source_up", source="database") == 1
    assert value(samples, "provisioner_metrics_source_up", source="redis") == 1


def test_the_token_admits_any_address_and_a_wrong_or_missing_one_is_refused(settings):
    settings.METRICS_TOKEN = TOKEN
    assert get(OUTSIDE, f"Bearer {TOKEN}").status_code == 200
    assert get(OUTSIDE, f"bearer {TOKEN}").status_code == 200
    assert get(OUTSIDE).status_code == 403  # no token
    for wrong in (f"Bearer {TOKEN}x", "Bearer ", f"Token {TOKEN}", TOKEN):
        assert get(OUTSIDE, wrong).status_code == 403, wrong
    # A token that is sent must be right even from an allowed address: a scraper with a stale token is told.
    refused = get("127.0.0.1", "Bearer stale")
    assert refused.status_code == 403
    assert TOKEN not in refused.content.decode() and "stale" not in refused.content.decode()
    assert TOKEN not in get(OUTSIDE, f"Bearer {TOKEN}").content.decode()


def test_an_address_outside_the_list_is_refused(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_CIDRS = ["10.0.0.0/8", "2001:db8::/32"]
    assert get("10.20.30.40").status_code == 200
    assert get("2001:db8::5").status_code == 200
    assert get("127.0.0.1").status_code == 403
    assert get("11.0.0.1").status_code == 403
    assert get("::1").status_code == 403


def test_with_neither_token_nor_list_metrics_are_off(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_CIDRS = []
    assert get("127.0.0.1").status_code == 404
    assert get("127.0.0.1", "Bearer anything").status_code == 404


def test_only_get_is_served():
    assert Client().post("/metrics").status_code == 405


def test_a_bad_network_in_the_list_stops_start_up_naming_it():
    env = {**os.environ, "PROVISIONER_DEV": "1", "METRICS_ALLOWED_CIDRS": "10.0.0.0/8,10.0.0.300/32"}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "METRICS_ALLOWED_CIDRS: '10.0.0.300/32' is not a network" in result.stderr
