"""Rotating PROVISIONER_FIELD_KEYS as the runbook in README says, run the way an operator runs it: separate
`manage.py` processes with the environment changing between them. After the rotation the old key is
dropped, and every stored secret (BMC passwords, jump host and site login SSH keys) must still decrypt.
And no encrypted column can be left out: every value the code encrypts lands in a column declared
encrypted, which is what the rotation works from."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings
from django.db import connection

from access.models import JumpHost, SiteLogin
from audit.models import AuditEntry
from inventory import crypto
from inventory.models import BMC
from tests.conftest import make_bmc, make_site
from tests.integration.access import sshd

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("provisioner", "inventory", "installs", "audit", "access")
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
    site = make_site(slug="dc1")
    bmc = make_bmc(password="bmc-secret-1")
    hop = JumpHost(site=site, order=1, address="192.0.2.1", username="jump", host_key=host_pub)
    hop.set_private_key(private)
    hop.save()
    login = SiteLogin(site=site)
    login.set_private_key(private)
    login.save()
    return {"bmc": bmc, "hop": hop, "login": login, "private": private}


def everything_decrypts(secrets) -> None:
    assert BMC.objects.get(pk=secrets["bmc"].pk).get_password() == "bmc-secret-1"
    assert JumpHost.objects.get(pk=secrets["hop"].pk).get_private_key() == secrets["private"]
    assert SiteLogin.objects.get(pk=secrets["login"].pk).get_private_key() == secrets["private"]


def test_the_rotation_runbook_leaves_every_secret_readable_under_the_new_key_alone(secrets, settings):
    # 1. New key first, old key still listed, on every host; 2. rotate.
    rotated = manage("rotate_field_keys", keys=[NEW, OLD])
    assert rotated.returncode == 0, rotated.stderr
    assert "Re-encrypted 3 stored secret(s)" in rotated.stdout
    assert "1 access.jumphost.private_key_ciphertext" in rotated.stdout
    # 3. The old key dropped: each secret decrypts under the new key alone.
    settings.PROVISIONER_FIELD_KEYS = [NEW]
    everything_decrypts(secrets)
    assert Fernet(NEW).decrypt(raw(SiteLogin, secrets["login"].pk, "private_key_ciphertext").encode())
    # 4. The check the runbook runs before restarting without the old key.
    checked = manage("rotate_field_keys", "--check", keys=[NEW])
    assert checked.returncode == 0 and "All 3 stored secret(s) decrypt" in checked.stdout, checked.stderr
    # The check does check: with only the old key, nothing decrypts any more and it says which.
    stale = manage("rotate_field_keys", "--check", keys=[OLD])
    assert stale.returncode != 0 and "3 stored secret(s) cannot be decrypted" in stale.stderr
    assert "machines of dc1" in stale.stderr and "jump-dc1-1" in stale.stderr
    entry = AuditEntry.objects.get(action="crypto.keys_rotated")
    assert entry.details["counts"] == [
        ["access.jumphost.private_key_ciphertext", 1],
        ["access.sitelogin.private_key_ciphertext", 1],
        ["inventory.bmc.password_ciphertext", 1],
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


def _encrypting_assignments():
    """(file, class name, attribute) for every `self.<attribute> = crypto.encrypt(...)` in the project;
    fails on a call to encrypt() whose result goes anywhere else, since its column cannot be told."""
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts or path == ROOT / "inventory" / "crypto.py":
                continue
            tree = ast.parse(path.read_text(), str(path))
            assigned = set()
            for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
                for node in ast.walk(cls):
                    if isinstance(node, ast.Assign) and _is_encrypt(node.value):
                        (target,) = node.targets
                        assert isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self", (
                            f"{path}:{node.lineno}: encrypt() must be assigned to a model field (self.<field>)"
                        )
                        found.append((path, cls.name, target.attr))
                        assigned.add(id(node.value))
            stray = [n for n in ast.walk(tree) if _is_encrypt(n) and id(n) not in assigned]
            assert not stray, f"{path}:{stray[0].lineno}: encrypt() whose result is not stored in a model field"
    return found


def _is_encrypt(node) -> bool:
    return isinstance(node, ast.Call) and ast.unparse(node.func) in ("crypto.encrypt", "encrypt")


def test_every_encrypted_value_is_stored_in_a_column_the_rotation_covers():
    models_by_name = {(m.__module__, m.__name__): m for m in apps.get_models()}
    stored = set()
    for path, class_name, attribute in _encrypting_assignments():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        field = models_by_name[(module, class_name)]._meta.get_field(attribute)
        assert isinstance(field, crypto.EncryptedTextField), (
            f"{module}.{class_name}.{attribute} is not declared encrypted"
        )
        stored.add(crypto.field_label(field))
    covered = {crypto.field_label(f) for f in crypto.encrypted_fields()}
    assert stored == covered and len(covered) >= 3, (stored, covered)


def test_nothing_else_encrypts_with_the_field_keys():
    """Only inventory/crypto.py makes a Fernet (settings.py only generates a development key), so
    everything encrypted goes through encrypt() and the test above."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path not in (ROOT / "inventory" / "crypto.py", ROOT / "provisioner" / "settings.py"):
                assert "Fernet" not in path.read_text(), path
