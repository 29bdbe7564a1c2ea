"""The technician pages: what they show, what they refuse, what they never show, and what they cost."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEntry
from config.security import ADMIN_POLICY
from core import queues
from installs.models import Install
from installs.tokens import agent_token, boot_token, callback_token
from inventory.models import BMC, Machine
from tests import redis_claim
from tests.conftest import make_bmc, make_machine
from tests.integration.ui.conftest import user_with_role
from tests.unit.test_django_rq_csp import DEAD_ACTIONS_BLOCK, SCRIPT, csp_hash

pytestmark = pytest.mark.django_db


def client_for(role: str) -> Client:
    client = Client()
    client.force_login(user_with_role(role, f"{role}-pages"))
    return client


def page_urls(s) -> list[str]:
    return [
        reverse("home"),
        reverse("inventory:machine-list"),
        reverse("inventory:machine-detail", args=[s.busy.hostname]),
        reverse("inventory:machine-detail", args=[s.idle.hostname]),
        reverse("inventory:machine-hardware", args=[s.idle.hostname]),
        reverse("inventory:rack-list"),
        reverse("inventory:rack-detail", args=[s.rack.pk]),
        reverse("install-list"),
        reverse("install-detail", args=[s.running.pk]),
        reverse("install-detail", args=[s.failed.pk]),
        reverse("batch-list"),
        reverse("batch-detail", args=[s.batch.pk]),
        reverse("accounts:token-list"),
        reverse("profile-list"),
        reverse("profile-detail", args=[s.profile.name]),
        reverse("workflow-list"),
        reverse("workflow-detail", args=["scene-flow"]),
    ]


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
STYLE_ATTR = re.compile(r"<[^>]+\sstyle\s*=", re.I)


def test_pages_carry_a_csp_without_inline_script_and_have_none(scene):
    client = client_for("admin")
    for url in page_urls(scene) + ["/api/v1/machines", reverse("audit:log"), "/admin/"]:
        response = client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        script_src = re.search(r"script-src ([^;]*)", policy).group(1)
        assert script_src == "'self'", (url, policy)
        if url.startswith("/admin/") or url.startswith("/api/"):
            continue
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), url
        assert not INLINE_HANDLER.search(html), url
        assert not STYLE_ATTR.search(html), url


def test_django_rq_pages_load_scripts_only_from_us_under_the_admin_policy():
    """django-rq's pages, opened by the admin role (not staff; console/queue_pages.py), keep script-src
    'self': their scripts are our static files, and their one inline block is the dead one
    config/security.py explains, rendered byte for byte as in the template
    (tests/unit/test_django_rq_csp.py pins its hash)."""
    client = client_for("admin")
    redis_claim.flush()
    queue = queues.get_queue()
    job = queue.enqueue("os.getcwd")
    inline = set()
    try:
        urls = ["/django-rq/", "/django-rq/queues/0/", f"/django-rq/queues/0/{job.id}/", "/django-rq/workers/0/"]
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, url
            assert response["Content-Security-Policy"] == ADMIN_POLICY, url
            for attrs, body in SCRIPT.findall(response.content.decode()):
                src = re.search(r"""src=["']([^"']+)""", attrs)
                if src:
                    assert src.group(1).startswith(settings.STATIC_URL), (url, attrs)
                else:
                    inline.add(csp_hash(body))
        assert inline == {DEAD_ACTIONS_BLOCK}, inline
    finally:
        redis_claim.flush()


def test_every_form_that_posts_carries_the_csrf_token(scene):
    client = client_for("admin")
    for url in page_urls(scene):
        html = client.get(url).content.decode()
        for form in re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", html, re.S | re.I):
            assert "csrfmiddlewaretoken" in form, (url, form[:200])


def test_no_secret_in_any_page_json_or_csv(scene):
    """BMC passwords (plain or encrypted), install tokens, their nonce and hash, and the raw plan."""
    bmc = BMC.objects.get(machine=scene.busy)
    secrets = {
        "s3cret-bmc-pw",
        bmc.password_ciphertext,
        boot_token(scene.running.token_nonce),
        agent_token(scene.running.token_nonce),
        callback_token(scene.running.token_nonce),
        scene.running.token_nonce,
        scene.running.boot_token_hash,
        scene.running.callback_token_hash,
        "PLAN-MUST-NOT-SHOW",
    }
    client = client_for("admin")
    urls = page_urls(scene) + [
        reverse("inventory:machine-export"),
        reverse("install-log", args=[scene.running.pk]),
        "/api/v1/machines",
        f"/api/v1/machines/{scene.busy.hostname}",
        "/api/v1/installs",
        f"/api/v1/installs/{scene.running.pk}",
        f"/api/v1/installs/{scene.running.pk}/events",
        f"/api/v1/batches/{scene.batch.pk}",
        "/api/v1/openapi.json",
        reverse("home") + "?partial=1",
        reverse("install-detail", args=[scene.running.pk]) + "?partial=1",
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        text = body.decode()
        for secret in secrets:
            assert secret not in text, f"{url} shows a secret"


def test_machine_list_costs_the_same_queries_for_5_or_60_machines(scene):
    client = client_for("viewer")

    def cost() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("inventory:machine-list") + "?per_page=100").status_code == 200
        return len(queries)

    few = cost()
    for n in range(58):
        machine = make_machine(scene.rack if n < 5 else None, position_u=5 + n if n < 5 else None, vendor=f"V{n % 4}")
        make_bmc(machine, address=f"10.1.0.{n + 1}")
    assert Machine.objects.count() == 60
    assert cost() == few
    assert few <= 12  # the page's machines' tags, every tag (filter and selection), the columns chosen


def test_dashboard_costs_at_most_10_queries(scene):
    client = client_for("viewer")
    client.get(reverse("home"))
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("home"))
    assert response.status_code == 200
    assert len(queries) <= 10, [q["sql"][:120] for q in queries]
    html = response.content.decode()
    assert "busy-01" in html and "Installer running" in html  # in flight, with its step
    assert "The installer reported a failure: disk full." in html  # the failure in words
    assert "rollout" in html  # the batch


@pytest.mark.parametrize(
    "text",
    ["52:54:00", "52-54-00-00", "5254.00", "SN-BUSY", "10.0.0.11", "busy"],
)
def test_search_finds_by_mac_in_any_notation_serial_bmc_and_hostname(scene, text):
    mac = scene.busy.nics.get().mac
    if text.startswith("52"):
        # make the query specific to busy-01's MAC in the notation under test
        digits = mac.replace(":", "")
        text = {"52:54:00": mac.upper(), "52-54-00-00": "-".join(re.findall("..", digits)).upper()}.get(
            text, ".".join(re.findall("....", digits))
        )
    client = client_for("viewer")
    html = client.get(reverse("inventory:machine-list"), {"q": text}).content.decode()
    assert "busy-01" in html, text
    assert "idle-01" not in html, text


def test_filters_and_csv_export_of_the_current_view_are_formula_escaped(scene):
    client = client_for("viewer")
    response = client.get(reverse("inventory:machine-export"), {"vendor": "HPE"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][0] == "hostname"
    assert [r[0] for r in rows[1:]] == ["idle-01"]
    serial = rows[1][rows[0].index("serial")]
    assert serial == "'=cmd|' /C calc'!A0"
    assert rows[1][rows[0].index("last_install_state")] == "failed"
    html = client.get(reverse("inventory:machine-list"), {"status": "new", "profile": "debian-12-preseed"}).content
    assert b"busy-01" in html and b"idle-01" in html
    html = client.get(reverse("inventory:machine-list"), {"sort": "-hostname"}).content.decode()
    assert html.index("idle-01") < html.index("busy-01")


def test_destructive_action_needs_the_hostname_typed_server_side(scene):
    client = client_for("technician")
    url = reverse("inventory:machine-action")
    post = {"action": "install", "profile": scene.profile.name, "machine": scene.idle.pk, "confirmed": "1"}
    before = Install.objects.count()
    response = client.post(url, {**post, "confirm": "wrong"})
    assert response.status_code == 400
    assert Install.objects.count() == before
    response = client.post(url, {**post, "confirm": ""})
    assert response.status_code == 400
    response = client.post(url, {**post, "confirm": scene.idle.hostname})
    assert response.status_code == 302
    assert Install.objects.filter(machine=scene.idle, state="queued").exists()
    assert AuditEntry.objects.filter(action="install.request", actor_label="technician-pages").exists()


def test_several_machines_need_their_number_typed(scene):
    client = client_for("technician")
    url = reverse("inventory:machine-action")
    post = {"action": "off", "machine": [scene.idle.pk, scene.busy.pk], "confirmed": "1"}
    response = client.post(url, {**post, "confirm": scene.idle.hostname})
    assert response.status_code == 400
    assert b"Type <strong>2</strong>" in response.content
    # Without confirmed (no JavaScript) the server answers with the confirm page listing the machines.
    page = client.post(url, {"action": "off", "machine": [scene.idle.pk, scene.busy.pk]}).content.decode()
    assert "busy-01" in page and "idle-01" in page and 'name="confirm"' in page


def test_unprotect_is_for_admins_and_needs_a_reason(scene):
    Machine.objects.filter(pk=scene.idle.pk).update(protected=True)
    url = reverse("inventory:machine-protect", args=[scene.idle.hostname])
    assert client_for("technician").post(url, {"protected": "0", "reason": "decommission"}).status_code == 403
    admin = client_for("admin")
    admin.post(url, {"protected": "0", "reason": "  "})
    assert Machine.objects.get(pk=scene.idle.pk).protected
    admin.post(url, {"protected": "0", "reason": "rebuild for project X"})
    assert not Machine.objects.get(pk=scene.idle.pk).protected
    entry = AuditEntry.objects.get(action="machine.unprotect")
    assert entry.details == {"reason": "rebuild for project X"}


def test_machine_page_shows_bmc_facts_nics_history_and_previews(scene):
    Machine.objects.filter(pk=scene.busy.pk).update(
        facts={"cpus": 64, "memory_bytes": 2**37, "disks": [{"name": "sda", "path": "/dev/sda", "size_bytes": 10**12}]}
    )
    client = client_for("viewer")
    html = client.get(reverse("inventory:machine-detail", args=[scene.busy.hostname])).content.decode()
    assert "10.0.0.11" in html and "64" in html and "/dev/sda" in html
    assert f"?machine={scene.busy.hostname}" in html  # its audit trail
    assert reverse("install-detail", args=[scene.running.pk]) in html
    preview = reverse("inventory:machine-preview", args=[scene.busy.hostname, scene.profile.name, "preseed"])
    assert preview not in html  # previews carry the root password hash: technicians only
    client = client_for("technician")
    html = client.get(reverse("inventory:machine-detail", args=[scene.busy.hostname])).content.decode()
    assert preview in html
    text = client.get(preview).content.decode()
    assert "/i/PREVIEW-CALLBACK-TOKEN-not-real/events/" in text and "d-i" in text
