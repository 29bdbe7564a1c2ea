"""Rotating PROVISIONER_FIELD_KEYS as the runbook in README says, run the way an operator runs it: separate
`manage.py` processes with the environment changing between them. After the rotation the old key is
dropped, and every stored secret (BMC passwords, jump host and site login SSH keys) must still decrypt.
And no encrypted column can be left out: only an encrypted column's own accessors encrypt, and the
columns declared encrypted are what the rotation works from."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import connection

from access.models import JumpHost, SiteCA, SiteLogin
from audit.models import AuditEntry
from inventory import crypto
from inventory.models import BMC, Pdu, Site
from tests.conftest import make_bmc, make_pdu, make_site
from tests.integration.access import sshd
from webhooks.models import Endpoint

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "config", "core", "console", "accounts", "provisioner", "inventory", "installs", "audit", "access", "webhooks",
)  # fmt: skip
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def manage(*args: str, keys: list[str]) -> subprocess.CompletedProcess:
    """One `manage.py` run against the test database with PROVISIONER_FIELD_KEYS as given."""
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "PROVISIONER_FIELD_KEYS": ",".join(keys),
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def raw(model, pk: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.fixture
def secrets(transactional_db, settings, tmp_path):
    """One secret in every encrypted column, written under OLD (committed: the commands run elsewhere)."""
    if sshd.available():
        pytest.skip(sshd.available())
    settings.PROVISIONER_FIELD_KEYS = [OLD]
    private, _ = sshd.keygen(tmp_path / "key")
    _, host_pub = sshd.keygen(tmp_path / "host")
    site = make_site(slug="dc1", bmc_username="admin")
    site.set_bmc_password("site-bmc-secret")
    site.save()
    bmc = make_bmc(password="bmc-secret-1")
    hop = JumpHost(site=site, order=1, address="192.0.2.1", username="jump", host_key=host_pub)
    hop.set_private_key(private)
    hop.save()
    login = SiteLogin(site=site)
    login.set_private_key(private)
    login.save()
    ca = SiteCA.for_site(site)
    pdu = make_pdu(site, community="pdu-community-1")
    pdu_v3 = make_pdu(site, community="", snmp_version="v3", v3_user="ops")
    pdu_v3.set_auth_key("pdu-auth-key-1")
    pdu_v3.set_priv_key("pdu-priv-key-1")
    pdu_v3.save()
    hook = Endpoint(name="pager", url="https://hooks.example.net/provisioner", events=["install.failed"])
    hook.set_secret("webhook-secret-0123456789")
    hook.save()
    return {
        "bmc": bmc, "hop": hop, "login": login, "private": private, "pdu": pdu, "pdu_v3": pdu_v3, "site": site,
        "ca": (ca.pk, ca.get_private_key()), "hook": hook,
    }  # fmt: skip


def everything_decrypts(secrets) -> None:
    assert BMC.objects.get(pk=secrets["bmc"].pk).get_password() == "bmc-secret-1"
    assert Site.objects.get(pk=secrets["site"].pk).get_bmc_password() == "site-bmc-secret"
    assert JumpHost.objects.get(pk=secrets["hop"].pk).get_private_key() == secrets["private"]
    assert SiteLogin.objects.get(pk=secrets["login"].pk).get_private_key() == secrets["private"]
    assert SiteCA.objects.get(pk=secrets["ca"][0]).get_private_key() == secrets["ca"][1]
    assert Pdu.objects.get(pk=secrets["pdu"].pk).get_community() == "pdu-community-1"
    pdu_v3 = Pdu.objects.get(pk=secrets["pdu_v3"].pk)
    assert (pdu_v3.get_auth_key(), pdu_v3.get_priv_key()) == ("pdu-auth-key-1", "pdu-priv-key-1")
    assert Endpoint.objects.get(pk=secrets["hook"].pk).get_secret() == "webhook-secret-0123456789"


def test_the_rotation_runbook_leaves_every_secret_readable_under_the_new_key_alone(secrets, settings):
    # 1. New key first, old key still listed, on every host; 2. rotate.
    rotated = manage("rotate_field_keys", keys=[NEW, OLD])
    assert rotated.returncode == 0, rotated.stderr
    assert "Re-encrypted 9 stored secret(s)" in rotated.stdout
    assert "1 access.jumphost.private_key_ciphertext" in rotated.stdout
    # 3. The old key dropped: each secret decrypts under the new key alone.
    settings.PROVISIONER_FIELD_KEYS = [NEW]
    everything_decrypts(secrets)
    assert Fernet(NEW).decrypt(raw(SiteLogin, secrets["login"].pk, "private_key_ciphertext").encode())
    # 4. The check the runbook runs before restarting without the old key.
    checked = manage("rotate_field_keys", "--check", keys=[NEW])
    assert checked.returncode == 0 and "All 9 stored secret(s) decrypt" in checked.stdout, checked.stderr
    # The check does check: with only the old key, nothing decrypts any more and it says which.
    stale = manage("rotate_field_keys", "--check", keys=[OLD])
    assert stale.returncode != 0 and "9 stored secret(s) cannot be decrypted" in stale.stderr
    assert "machines of dc1" in stale.stderr and "jump-dc1-1" in stale.stderr
    entry = AuditEntry.objects.get(action="crypto.keys_rotated")
    assert entry.details["counts"] == [
        ["access.jumphost.private_key_ciphertext", 1],
        ["access.siteca.private_key_ciphertext", 1],
        ["access.sitelogin.private_key_ciphertext", 1],
        ["inventory.bmc.new_user_password_ciphertext", 0],
        ["inventory.bmc.password_ciphertext", 1],
        ["inventory.pdu.auth_key_ciphertext", 1],
        ["inventory.pdu.community_ciphertext", 1],
        ["inventory.pdu.priv_key_ciphertext", 1],
        ["inventory.site.bmc_password_ciphertext", 1],
        ["webhooks.endpoint.secret_ciphertext", 1],
    ]


def test_one_unreadable_secret_anywhere_changes_nothing(secrets, settings):
    settings.PROVISIONER_FIELD_KEYS = [Fernet.generate_key().decode()]  # a key that is then lost
    lost = SiteLogin.objects.get(pk=secrets["login"].pk)
    lost.set_private_key(secrets["private"])
    lost.save()
    before = {
        "bmc": raw(BMC, secrets["bmc"].pk, "password_ciphertext"),
        "hop": raw(JumpHost, secrets["hop"].pk, "private_key_ciphertext"),
    }
    result = manage("rotate_field_keys", keys=[NEW, OLD])
    assert result.returncode != 0
    assert "1 stored secret(s) cannot be decrypted" in result.stderr and "nothing was changed" in result.stderr
    assert f"access.sitelogin.private_key_ciphertext id {lost.pk}" in result.stderr
    assert raw(BMC, secrets["bmc"].pk, "password_ciphertext") == before["bmc"]  # one transaction for all
    assert raw(JumpHost, secrets["hop"].pk, "private_key_ciphertext") == before["hop"]
    assert not AuditEntry.objects.filter(action="crypto.keys_rotated").exists()


def _calls(tree, names: tuple[str, ...]) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) in names]


def test_only_the_encrypted_field_encrypts_so_every_secret_is_in_a_column_the_rotation_covers():
    """encrypt() and decrypt() are called only by EncryptedTextField's accessors (in inventory/crypto.py), which
    store into their own column: so whatever the code encrypts lands in a column the rotation works from."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts or path == ROOT / "inventory" / "crypto.py":
                continue
            tree = ast.parse(path.read_text(), str(path))
            stray = _calls(tree, ("crypto.encrypt", "encrypt", "crypto.decrypt", "decrypt"))
            assert not stray, f"{path}:{stray[0].lineno}: a secret encrypted outside an EncryptedTextField"
    covered = {crypto.field_label(f) for f in crypto.encrypted_fields()}
    assert covered >= {
        "inventory.bmc.password_ciphertext",
        "access.jumphost.private_key_ciphertext",
        "access.sitelogin.private_key_ciphertext",
    }


def test_each_encrypted_column_gives_its_model_the_accessors():
    for field in crypto.encrypted_fields():
        secret = field.name.removesuffix("_ciphertext")
        for accessor in (f"has_{secret}", f"set_{secret}", f"get_{secret}"):
            assert hasattr(field.model, accessor), (crypto.field_label(field), accessor)


def test_nothing_else_encrypts_with_the_field_keys():
    """Only inventory/crypto.py makes a Fernet (settings.py only generates a development key), so
    everything encrypted goes through encrypt() and the test above."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path not in (ROOT / "inventory" / "crypto.py", ROOT / "config" / "settings.py"):
                assert "Fernet" not in path.read_text(), path
