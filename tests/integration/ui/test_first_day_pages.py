"""What a new technician trips over on the pages: addresses that look alike, a missing icon."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.service import Actor, record
from core import queues
from tests import redis_claim
from tests.conftest import make_bmc, make_machine, make_site
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db


def viewer() -> Client:
    client = Client()
    client.force_login(user_with_role("viewer", "first-day"))
    return client


def test_the_bmc_column_shows_the_port_when_it_is_not_the_drivers_default():
    lab = [make_machine(hostname=f"lab-{n}") for n in (1, 2)]
    make_bmc(lab[0], driver="ipmi", address="127.0.0.1", port=6231)
    make_bmc(lab[1], driver="ipmi", address="127.0.0.1", port=6232)
    make_bmc(make_machine(hostname="real-ipmi"), driver="ipmi", address="10.1.0.5", port=623)
    make_bmc(make_machine(hostname="real-redfish"), driver="redfish", address="10.1.0.6", port=443)
    make_bmc(make_machine(hostname="odd-redfish"), driver="redfish", address="fd00::6", port=8443)
    page = viewer().get("/machines/").content.decode()
    assert "<code>127.0.0.1:6231</code>" in page and "<code>127.0.0.1:6232</code>" in page
    assert "<code>10.1.0.5</code>" in page and "<code>10.1.0.6</code>" in page
    assert "<code>[fd00::6]:8443</code>" in page


def test_every_page_links_the_icon_and_favicon_ico_leads_to_it():
    client = viewer()
    page = client.get("/machines/").content.decode()
    assert 'rel="icon" href="/static/img/favicon.svg"' in page
    answer = Client().get("/favicon.ico")  # browsers ask before anyone logs in
    assert answer.status_code == 302 and answer["Location"] == "/static/img/favicon.svg"
    icon = Client().get(answer["Location"])
    assert icon.status_code == 200 and b"<svg" in b"".join(icon.streaming_content)


def test_django_rqs_pages_list_every_sites_queue_where_its_installs_run():
    redis_claim.flush()
    make_site(slug="dc1")
    make_site(slug="dc2")
    job = queues.site_queue("dc2").enqueue("os.getcwd")
    client = Client()
    client.force_login(user_with_role("admin", "queues-admin"))
    home = client.get(reverse("django_rq:home")).content.decode()
    listed = re.findall(r'queues/(\d+)/details/">\s*([\w-]+)\s*<', home)
    assert sorted(name for _, name in listed) == ["default", "site-dc1", "site-dc2", "webhooks"]
    # The site's queue opens by its index, with the job queued on it.
    index = dict((name, n) for n, name in listed)["site-dc2"]
    jobs = client.get(reverse("django_rq:jobs", args=[index]))
    assert jobs.status_code == 200 and job.id in jobs.content.decode()
    redis_claim.flush()


def test_the_audit_page_reads_details_as_keys_and_values_and_hides_engine_transitions():
    machine = make_machine(hostname="web01")
    engine_actor, person = Actor.system("engine"), Actor.system("manage.py")
    record(engine_actor, "install.transition", machine, {"from": "queued", "to": "preparing"})
    record(person, "machine.change", machine, {"changes": {"vendor": ["", "Dell"]}, "reason": "new rack"})
    client = viewer()
    page = client.get("/audit/").content.decode()
    rows = page[page.index("<tbody>") : page.index("</tbody>")]
    assert "machine.change" in rows and "install.transition" not in rows
    assert "<dt>reason</dt><dd><code>new rack</code></dd>" in rows
    assert "<dt>changes</dt><dd><code>{&quot;vendor&quot;: [&quot;&quot;, &quot;Dell&quot;]}</code></dd>" in rows
    assert "{&#x27;" not in rows  # no Python repr
    assert rows.count("inventory.machine") == 1  # in the object's title, not repeated beside its name
    assert 'name="transitions" value="1">' in page  # the toggle, off

    shown = client.get("/audit/", {"transitions": "1"}).content.decode()
    assert "install.transition" in shown and 'value="1" checked>' in shown
    assert "install.transition" in client.get("/audit/", {"action": "install.transition"}).content.decode()
    export = b"".join(client.get("/audit/export.csv").streaming_content).decode()
    assert "machine.change" in export and "install.transition" not in export  # the export is what the page shows
