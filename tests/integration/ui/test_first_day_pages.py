"""What a new technician trips over on the pages: addresses that look alike, a missing icon."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import make_bmc, make_machine
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
