"""Host ping stored and shown: the site worker's job pings 127.0.0.x for real and stores each machine's
answer; the pages, the API and the CLI show it beside BMC reachability; the bulk credential test is reached
from the machine list and its report from the browser and the API."""

import json
import shutil

import pytest
from django.core.management import call_command
from django.test import Client
from rq.registry import ScheduledJobRegistry

from accounts.api_tokens import create_token
from audit.models import AuditEntry
from audit.service import Actor
from core import queues
from inventory import credentials_check, hostping
from inventory.models import BMC, NIC, CredentialCheck, Machine
from provisioner.bmc import hostping as icmp
from tests import redis_claim
from tests.conftest import make_bmc, make_machine, make_rack
from tests.integration.ui.conftest import user_with_role

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        shutil.which("ping") is None and not icmp.socket_allowed(), reason="iputils-ping is in .ci/apt-packages"
    ),
]


@pytest.fixture(autouse=True)
def _redis(settings):
    settings.HOST_PING_TIMEOUT_S = 1.0
    redis_claim.flush()
    yield
    redis_claim.flush()


def host(rack, position, ip, **kw):
    machine = make_machine(rack=rack, position_u=position, **kw)
    if ip is not None:
        NIC.objects.filter(machine=machine).update(ip=ip, prefix_len=8)
    return machine


@pytest.fixture
def site():
    rack = make_rack(height_u=12)
    up = host(rack, 1, "127.0.0.21")
    also_up = host(rack, 2, "127.0.0.22")
    bare = host(rack, 3, None)
    make_bmc(up, driver="fake", address="127.0.9.21")
    return rack, up, also_up, bare


def test_a_site_ping_stores_each_hosts_answer(site):
    rack, up, also_up, bare = site
    assert hostping.ping_site(rack.site.slug) == f"{rack.site.slug}: 2 of 3 hosts answered"
    up.refresh_from_db()
    bare.refresh_from_db()
    assert up.host_reachable is True and 0 <= up.host_latency_ms < 1000 and up.host_checked_at is not None
    assert Machine.objects.get(pk=also_up.pk).host_reachable is True
    assert (bare.host_reachable, bare.host_last_error) == (None, hostping.NO_ADDRESS)
    # A silent host (the real timeout path is tested in a network namespace: tests/integration/bmc/test_hostping.py).
    hostping.note_host_pings({up.pk: icmp.PingResult("127.0.0.21", False, error="no echo reply within 1 s")})
    up.refresh_from_db()
    assert (up.host_reachable, up.host_latency_ms, up.host_last_error) == (False, None, "no echo reply within 1 s")


def test_the_periodic_ping_is_one_job_per_site_and_on_demand_ones_are_audited(site, django_capture_on_commit_callbacks):
    rack, up, also_up, bare = site
    other = make_rack()
    host(other, 1, "127.0.0.23")
    assert hostping.host_ping_sync() == 2
    for slug in (rack.site.slug, other.site.slug):
        assert ScheduledJobRegistry(queue=queues.site_queue(slug)).get_job_ids() == [f"host-ping-{slug}"]
    with django_capture_on_commit_callbacks(execute=True):
        [job_id] = hostping.enqueue_host_pings([up, also_up], Actor.system("test"))
    job = queues.site_queue(rack.site.slug).fetch_job(job_id)
    assert job.perform() == "2 of 2 hosts answered"
    assert AuditEntry.objects.filter(action="machine.host_ping").count() == 2
    loose = make_machine(rack=None, position_u=None)
    with pytest.raises(hostping.HostPingRefused, match=loose.hostname):
        hostping.enqueue_host_pings([loose], Actor.system("test"))


def test_the_command_pings_and_prints(site, capsys):
    rack, up, also_up, bare = site
    call_command("hostping", "--site", rack.site.slug)
    out = capsys.readouterr().out
    assert f"{up.hostname}" in out and "127.0.0.21" in out and "answers in" in out
    assert f"{bare.hostname}" in out and "no address" in out


def test_pages_show_bmc_and_host_reachability_and_reach_the_credential_test(site, django_capture_on_commit_callbacks):
    rack, up, also_up, bare = site
    hostping.ping_site(rack.site.slug)
    BMC.objects.filter(machine=up).update(reachable=False, last_error="no answer within 5 s")
    client = Client()
    client.force_login(user_with_role("technician", "tech"))
    listing = client.get("/machines/").content.decode()
    assert 'class="r-down" title="BMC: not answering — no answer within 5 s">BMC</span>' in listing
    assert 'class="r-up" title="Host ping: answers in' in listing
    assert "Test BMC credentials (one login each)" in listing and "Ping hosts" in listing
    page = client.get(f"/machines/{up.hostname}/").content.decode()
    assert '<code>127.0.0.21</code>: <span class="s-succeeded">answers</span>' in page
    assert f'action="/machines/{up.hostname}/host-ping"' in page
    rack_page = client.get(f"/racks/{rack.pk}/").content.decode()
    assert f"{up.hostname} — " in rack_page and "BMC not answering, host answers" in rack_page

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/machines/action", {"action": "credentials", "machine": [up.pk], "confirmed": "1"})
    check = CredentialCheck.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/credential-tests/{check.pk}/"
    report = client.get(response["Location"]).content.decode()
    assert "1 still running" in report and up.hostname in report
    credentials_check.run(check.pk, rack.site.slug)  # the fake driver: its ping is the one attempt
    report = client.get(response["Location"]).content.decode()
    assert 'data-result="ok"' in report and "Finished" in report

    with django_capture_on_commit_callbacks(execute=False):
        form = {"action": "host_ping", "machine": [up.pk, bare.pk], "confirmed": "1"}
        response = client.post("/machines/action", form)
    assert response.status_code == 302 and AuditEntry.objects.filter(action="machine.host_ping").count() == 2


def test_the_api_shows_reachability_and_runs_credential_tests(site, django_capture_on_commit_callbacks):
    rack, up, also_up, bare = site
    hostping.ping_site(rack.site.slug)
    _, key = create_token(user_with_role("technician", "tech-api"), "test", actor=Actor.system("test"))
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    detail = api.get(f"/api/v1/machines/{up.hostname}").json()
    assert detail["host"]["address"] == "127.0.0.21" and detail["host"]["reachable"] is True
    assert detail["bmc"]["credentials"] == "machine" and detail["bmc"]["credentials_result"] == ""
    listed = {m["hostname"]: m for m in api.get("/api/v1/machines").json()["results"]}
    assert listed[up.hostname]["host_reachable"] is True and listed[bare.hostname]["host_reachable"] is None

    def post(url, body):
        return api.post(url, json.dumps(body), content_type="application/json")

    with django_capture_on_commit_callbacks(execute=False):
        queued = post("/api/v1/host-pings", {"machines": [up.hostname]})
    assert queued.status_code == 202 and len(queued.json()["jobs"]) == 1
    assert post("/api/v1/host-pings", {"machines": ["nope"]}).status_code == 404

    with django_capture_on_commit_callbacks(execute=False):
        started = post("/api/v1/credential-tests", {"machines": [up.hostname]})
    assert started.status_code == 201
    body = started.json()
    assert [(r["machine"], r["result"]) for r in body["results"]] == [(up.hostname, "")]
    credentials_check.run(body["id"], rack.site.slug)
    done = api.get(f"/api/v1/credential-tests/{body['id']}").json()
    assert done["finished_at"] is not None and done["results"][0]["result"] == "ok"
    refused = post("/api/v1/credential-tests", {"machines": [bare.hostname]})
    assert refused.status_code == 409 and "No BMC configured" in refused.json()["detail"]
