"""Jump hosts and site logins in the admin: private keys are write-only, stored encrypted, audited as
"changed" only, and never part of a page."""

import io
import json
import re

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from access.models import JumpHost, SiteLogin
from audit.models import AuditEntry
from tests.conftest import make_site

from . import sshd

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    if sshd.available():
        pytest.skip(sshd.available())
    private, _ = sshd.keygen(tmp_path_factory.mktemp("admin-keys") / "k")
    _, host_pub = sshd.keygen(tmp_path_factory.mktemp("admin-keys") / "h")
    return private, host_pub


def key_body(private: str) -> str:
    """A line from the middle of the key: what would show if any part of it leaked."""
    return private.strip().splitlines()[1]


def column(table: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT private_key_ciphertext FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def form_data(site, host_pub, **kw):
    return {
        "site": site.pk,
        "order": 1,
        "address": "192.0.2.10",
        "port": 22,
        "username": "jump",
        "host_key": host_pub,
        **kw,
    }


def jump_host(site, keypair) -> JumpHost:
    private, host_pub = keypair
    hop = JumpHost(site=site, order=1, address="192.0.2.1", port=22, username="jump", host_key=host_pub)
    hop.set_private_key(private)
    hop.save()
    return hop


def hop_and_login(keypair) -> tuple[JumpHost, SiteLogin]:
    """A site's jump host and login key, both with ``keypair``'s private key."""
    hop = jump_host(make_site(), keypair)
    login = SiteLogin(site=hop.site)
    login.set_private_key(keypair[0])
    login.save()
    return hop, login


def test_a_jump_host_key_is_write_only_encrypted_and_audited_as_changed(admin_client, keypair):
    private, host_pub = keypair
    site = make_site()

    response = admin_client.post("/admin/access/jumphost/add/", form_data(site, host_pub, private_key=private))
    assert response.status_code == 302, response.content.decode()[:2000]

    hop = JumpHost.objects.get(site=site)
    raw = column("access_jumphost", hop.pk)
    assert raw.startswith("gAAAAA") and key_body(private) not in raw
    assert hop.get_private_key().strip() == private.strip()
    page = admin_client.get(f"/admin/access/jumphost/{hop.pk}/change/").content.decode()
    assert key_body(private) not in page and raw not in page and "PRIVATE KEY" not in page
    assert re.search(r'<textarea name="private_key"[^>]*>\s*</textarea>', page)
    listing = admin_client.get("/admin/access/jumphost/").content.decode()
    assert key_body(private) not in listing and raw not in listing
    entry = AuditEntry.objects.get(action="access.jumphost.add")
    assert entry.details["changes"]["private_key"] == "changed"
    assert key_body(private) not in json.dumps(entry.details) and raw not in json.dumps(entry.details)

    # Saved with the key left blank, the stored key stays.
    response = admin_client.post(f"/admin/access/jumphost/{hop.pk}/change/", form_data(site, host_pub, port=2222))
    assert response.status_code == 302
    hop.refresh_from_db()
    assert (hop.port, hop.private_key_ciphertext) == (2222, raw)
    change = AuditEntry.objects.get(action="access.jumphost.change")
    assert change.details["changes"] == {"port": [22, 2222]}


def test_a_jump_host_needs_a_key_a_pinned_host_key_and_refuses_garbage(admin_client, keypair):
    _, host_pub = keypair
    site = make_site()
    response = admin_client.post(
        "/admin/access/jumphost/add/", form_data(site, "not a key", private_key="-----BEGIN nonsense")
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "holds no SSH public key" in page
    assert "Not a private key" in page
    assert "nonsense" not in page, "a rejected key is not rendered back either"
    response = admin_client.post("/admin/access/jumphost/add/", form_data(site, host_pub))
    assert "Paste a private key" in response.content.decode()
    assert not JumpHost.objects.exists()


def test_a_site_login_key_can_be_generated_and_only_its_public_half_is_shown(admin_client):
    site = make_site()
    response = admin_client.post(
        "/admin/access/sitelogin/add/", {"site": site.pk, "username": "root", "port": 22, "generate_key": "on"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    login = SiteLogin.objects.get(site=site)
    private = login.get_private_key()
    assert login.public_key.startswith("ssh-ed25519 ") and login.public_key.endswith(f"provisioner@{site.slug}")
    page = admin_client.get(f"/admin/access/sitelogin/{login.pk}/change/").content.decode()
    assert login.public_key.split()[1] in page
    assert key_body(private) not in page and login.private_key_ciphertext not in page
    assert AuditEntry.objects.get(action="access.sitelogin.add").details["changes"]["private_key"] == "changed"


def test_repr_and_str_name_no_secret(keypair):
    private, _ = keypair
    hop = jump_host(make_site(), keypair)
    for text in (repr(hop), str(hop)):
        assert key_body(private) not in text and hop.private_key_ciphertext not in text


def test_rotation_re_encrypts_the_ssh_keys_all_or_nothing(settings, keypair):
    private, _ = keypair
    hop, login = hop_and_login(keypair)
    before = hop.private_key_ciphertext
    old_key, new_key = settings.PROVISIONER_FIELD_KEYS[0], Fernet.generate_key().decode()

    settings.PROVISIONER_FIELD_KEYS = [new_key]  # the old key missing: nothing may change
    with pytest.raises(CommandError, match=r"2 stored secret\(s\) cannot be decrypted"):
        call_command("rotate_field_keys", stdout=io.StringIO())
    assert column("access_jumphost", hop.pk) == before

    settings.PROVISIONER_FIELD_KEYS = [new_key, old_key]
    call_command("rotate_field_keys", stdout=io.StringIO())
    settings.PROVISIONER_FIELD_KEYS = [new_key]
    assert column("access_jumphost", hop.pk) != before
    assert JumpHost.objects.get(pk=hop.pk).get_private_key() == private
    assert SiteLogin.objects.get(pk=login.pk).get_private_key() == private
    counts = AuditEntry.objects.get(action="crypto.keys_rotated").details["counts"]
    assert {("access.jumphost.private_key_ciphertext", 1), ("access.sitelogin.private_key_ciphertext", 1)} <= {
        tuple(pair) for pair in counts
    }


def test_every_access_admin_page_renders(admin_client, keypair):
    private, _ = keypair
    hop, login = hop_and_login(keypair)
    for model, pk in (("jumphost", hop.pk), ("sitelogin", login.pk), ("machinehostkey", None)):
        for url in (f"/admin/access/{model}/", f"/admin/access/{model}/add/") + (
            (f"/admin/access/{model}/{pk}/change/",) if pk else ()
        ):
            response = admin_client.get(url)
            assert response.status_code == 200, url
            assert key_body(private) not in response.content.decode()
