"""PDUs from the browser and the API: the admin stores the community and v3 keys write-only and checks what
the SNMP version needs; the machine page and GET machines/{hostname} show the outlets; POST .../power queues
an action that the site worker runs through the outlet (run here as the worker would, against snmpsim)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from accounts.api_tokens import create_token
from audit.models import AuditEntry
from audit.service import Actor
from inventory import power
from inventory.models import Pdu, PduOutlet
from provisioner.pdu import profile, snmp
from tests import redis_claim
from tests.conftest import make_machine, make_pdu, make_site
from tests.integration.ui.conftest import user_with_role

from .conftest import v2c

pytestmark = pytest.mark.django_db

COMMUNITY = "page-Comm-never-shown-5Fq"


@pytest.fixture(autouse=True)
def _redis(settings):
    settings.BMC_MIN_INTERVAL_S = 0.01
    redis_claim.flush()
    yield
    redis_claim.flush()


def test_the_admin_stores_the_community_write_only_and_audits_no_secret(admin_client):
    site = make_site()
    form = {
        "site": site.pk,
        "name": "r9-pdu-a",
        "address": "10.9.0.5",
        "port": 161,
        "profile": "apc",
        "outlet_count": 24,
        "snmp_version": "v2c",
        "v3_auth_protocol": "sha",
        "v3_priv_protocol": "aes",
    }
    response = admin_client.post("/admin/inventory/pdu/add/", form)
    assert response.status_code == 200 and "SNMP v2c needs a community." in response.content.decode()
    assert not Pdu.objects.exists()

    response = admin_client.post("/admin/inventory/pdu/add/", {**form, "community": COMMUNITY})
    assert response.status_code == 302, response.content.decode()[:2000]
    pdu = Pdu.objects.get(name="r9-pdu-a")
    assert pdu.get_community() == COMMUNITY and COMMUNITY not in pdu.community_ciphertext
    page = admin_client.get(f"/admin/inventory/pdu/{pdu.pk}/change/").content.decode()
    assert COMMUNITY not in page and "community" in page
    # v3 without keys is refused by field; blank community keeps the stored one.
    response = admin_client.post(
        f"/admin/inventory/pdu/{pdu.pk}/change/", {**form, "snmp_version": "v3", "v3_user": "ops"}
    )
    assert "SNMPv3 needs an authentication key" in response.content.decode()
    response = admin_client.post(
        f"/admin/inventory/pdu/{pdu.pk}/change/",
        {**form, "snmp_version": "v3", "v3_user": "ops", "auth_key": "auth-key-123", "priv_key": "short"},
    )
    assert "SNMPv3 keys have at least 8 characters." in response.content.decode()
    pdu.refresh_from_db()
    assert pdu.snmp_version == "v2c" and pdu.get_community() == COMMUNITY
    details = json.dumps(list(AuditEntry.objects.values_list("details", flat=True)))
    assert COMMUNITY not in details and "community" in details


def test_the_machine_admin_refuses_an_outlet_the_pdu_does_not_have(admin_client):
    pdu = make_pdu(outlet_count=8, name="small-pdu")
    machine = make_machine()
    machine.rack.site = pdu.site
    machine.rack.save()
    page = admin_client.get(f"/admin/inventory/machine/{machine.pk}/change/").content.decode()
    assert "PDU outlets" in page
    outlet = PduOutlet(machine=machine, pdu=pdu, outlet=9)
    with pytest.raises(Exception, match="small-pdu has outlets 1–8; there is no outlet 9."):
        outlet.full_clean()


def test_page_api_and_worker_power_an_outlet_only_machine(snmpsim):
    pdu = make_pdu(name="r3-pdu-b", port=snmpsim.port, community=snmpsim.COMMUNITY["apc"])
    machine = make_machine()
    PduOutlet.objects.create(machine=machine, pdu=pdu, outlet=6)

    viewer = Client()
    viewer.force_login(user_with_role("viewer"))
    html = viewer.get(f"/machines/{machine.hostname}/").content.decode()
    assert "r3-pdu-b" in html and "No BMC: power goes through these outlets" in html
    assert snmpsim.COMMUNITY["apc"] not in html

    user = user_with_role("technician", "tech-api")
    _, key = create_token(user, "test", actor=Actor.system("test"))
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    detail = api.get(f"/api/v1/machines/{machine.hostname}").json()
    assert detail["pdu_outlets"] == [
        {
            "pdu": "r3-pdu-b",
            "outlet": 6,
            "address": "127.0.0.1",
            "port": snmpsim.port,
            "profile": "apc",
            "snmp_version": "v2c",
        }
    ]
    assert detail["capabilities"] == ["power"]
    assert snmpsim.COMMUNITY["apc"] not in json.dumps(detail)

    response = api.post(
        f"/api/v1/machines/{machine.hostname}/power", {"action": "pxe"}, content_type="application/json"
    )
    assert response.status_code == 409 and "only PDU outlets" in response.content.decode()
    response = api.post(
        f"/api/v1/machines/{machine.hostname}/power", {"action": "off"}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    # What the site worker runs for that job (the job takes ids and names, never a secret).
    assert power.run_action(machine.pk, "off", user.username, user.pk).endswith("(through PDU r3-pdu-b outlet 6)")
    assert snmp.get(v2c(snmpsim, "apc"), [profile("apc").state_oid_of(6)]) == [2]
    entry = AuditEntry.objects.filter(action="machine.off", object_id=str(machine.pk)).get()
    assert entry.details["via"] == "pdu" and entry.details["ok"] is True
