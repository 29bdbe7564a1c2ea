"""Secrets stay where they belong. A BMC password and an install's credentials (the boot credential,
the agent token, the callback token) are followed through full installs, a second use of a boot
credential, a failed login storm and a BMC that rejects its credentials, and then looked for
everywhere a leak would show: Redis (RQ job data and channel messages), log output, audit details,
events, pages and JSON answers, CSV exports and exception text."""

from __future__ import annotations

import json
import logging
import zlib

import pytest
from django.core.management import call_command

from audit.models import AuditEntry
from core import queues
from installs import tokens
from installs.models import Event, Install, InstallState
from provisioner.bmc import BmcAuthError
from tests.conftest import make_user

PASSWORD = "Bmc-Pa55word-Leak-Canary"


def redis_blobs() -> list[bytes]:
    """Every value in the test Redis database, decompressed where RQ compresses job data."""
    conn = queues.connection()
    blobs = []
    for key in conn.scan_iter():
        kind = conn.type(key)
        if kind == b"string":
            values = [conn.get(key)]
        elif kind == b"hash":
            values = list(conn.hgetall(key).values())
        elif kind == b"list":
            values = conn.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(conn.smembers(key))
        elif kind == b"zset":
            values = [m for m, _ in conn.zrange(key, 0, -1, withscores=True)]
        else:
            values = []
        for value in values:
            blobs.append(value)
            try:
                blobs.append(zlib.decompress(value))
            except (zlib.error, TypeError):
                pass
        blobs.append(key)
    return blobs


@pytest.fixture
def canary_machine(lab):
    machine = lab.machine()
    machine.bmc.set_password(PASSWORD)
    machine.bmc.save()
    lab.bmc(machine).password = PASSWORD  # the fake BMC now checks it, as a real one would
    return machine


def test_secrets_never_leak_during_a_full_install(lab, canary_machine, client, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    admin = make_user("root", superuser=True)
    machine = canary_machine
    install = lab.install([machine])
    lab.run_jobs()
    nonce = Install.objects.get(pk=install.pk).token_nonce
    boot, callback = tokens.boot_token(nonce), tokens.callback_token(nonce)
    # The machine's side: fetch the answer file (spending the boot credential), call back with the token
    # written in it; a stranger probes with a bad token.
    assert client.get(f"/i/{boot}/preseed.cfg").status_code == 200
    client.post(f"/i/{callback}/events/started")
    client.post(f"/i/{callback}/events/progress", {"message": "partitioning"})
    client.get(f"/i/{'z' * 40}/preseed.cfg")
    lab.run_jobs()
    client.post(f"/i/{callback}/events/finished")
    lab.run_jobs()
    assert Install.objects.get(pk=install.pk).state == InstallState.SUCCEEDED
    # An image install: the agent registers with its boot credential and works with the token handed over;
    # then someone presents the spent boot credential, which fails that install.
    image_machine = lab.machine()
    image = lab.install([image_machine], lab.image_profile())
    lab.run_jobs()
    image_nonce = Install.objects.get(pk=image.pk).token_nonce
    image_boot = tokens.boot_token(image_nonce)
    disks = [{"path": "/dev/sda", "size_bytes": 10**10}]
    hello = {"facts": {"nics": [{"mac": image_machine.pxe_nic.mac}], "disks": disks}, "key": "K" * 43}
    register = client.post(
        "/api/agent/v1/register", hello, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {image_boot}"
    )
    agent = register.json()["token"]
    client.get("/api/agent/v1/tasks/next", HTTP_AUTHORIZATION=f"Bearer {agent}")
    reused = client.post(
        "/api/agent/v1/register", hello, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {image_boot}"
    )
    assert reused.status_code == 403
    assert Install.objects.get(pk=image.pk).failure_reason == "BootCredentialReused"
    lab.run_jobs()
    secrets = [boot, callback, tokens.agent_token(nonce), image_boot, agent, tokens.callback_token(image_nonce)]
    # A second install whose BMC rejects the password: errors, retries, an alert.
    other = lab.machine()
    lab.bmc(other).fault = "auth"
    failed = lab.install([other])
    lab.run_jobs()
    assert Install.objects.get(pk=failed.pk).failure_reason == "BmcAuthError"

    client.force_login(admin)
    pages = [
        "/",
        "/admin/inventory/machine/",
        f"/admin/inventory/machine/{machine.pk}/change/",
        "/admin/installs/install/" if _admin_registered("installs", "install") else "/admin/",
        "/audit/",
        "/audit/export.csv",
        f"/audit/?machine={machine.hostname}",
        "/api/agent/v1/openapi.json",
    ]
    for extra in ("/machines/", f"/machines/{machine.pk}/", f"/installs/{install.pk}/", "/api/v1/installs"):
        pages.append(extra)
    pages += [
        f"/installs/{image.pk}/",
        f"/installs/{image.pk}/log.txt",
        f"/api/v1/installs/{image.pk}",
        f"/api/v1/installs/{image.pk}/events",
        f"/api/v1/machines/{image_machine.hostname}",
    ]
    seen = []
    for url in pages:
        response = client.get(url)
        if response.status_code == 404:
            continue
        body = b"".join(response.streaming_content) if response.streaming else response.content
        seen.append(url)
        for secret in (PASSWORD, *secrets, machine.bmc.password_ciphertext):
            assert secret.encode() not in body, f"{secret[:6]}… found in {url}"
    assert len(seen) >= 6

    out, err = capfd.readouterr()
    for where, text in (("logs", caplog.text), ("stdout", out), ("stderr", err)):
        for secret in (PASSWORD, *secrets):
            assert secret not in text, where
    for blob in redis_blobs():
        for secret in (PASSWORD, *secrets):
            assert secret.encode() not in blob
    for entry in AuditEntry.objects.all():
        dumped = json.dumps(entry.details) + entry.object_label
        assert not any(secret in dumped for secret in (PASSWORD, *secrets))
    for event in Event.objects.all():
        dumped = event.message + json.dumps(event.data)
        assert not any(secret in dumped for secret in (PASSWORD, *secrets))
    for install_row in Install.objects.all():
        steps = json.dumps(list(install_row.steps.values("params", "result", "message")))
        dumped = install_row.failure_message + json.dumps(install_row.plan.to_json()) + steps
        assert not any(secret in dumped for secret in (PASSWORD, *secrets))


def _admin_registered(app: str, model: str) -> bool:
    from django.apps import apps
    from django.contrib import admin

    return apps.get_model(app, model) in admin.site._registry


def test_bmc_errors_and_commands_never_carry_the_password(lab, canary_machine, capsys):
    lab.bmc(canary_machine).fault = "auth"
    from audit.service import Actor
    from inventory import power

    with pytest.raises(BmcAuthError) as exc:
        power.perform(canary_machine, "status", Actor.system("test"))
    assert PASSWORD not in str(exc.value) and PASSWORD not in repr(exc.value)
    with pytest.raises(Exception) as cli_error:
        call_command("bmc", canary_machine.hostname, "status")
    assert PASSWORD not in str(cli_error.value)
    assert PASSWORD not in capsys.readouterr().out


def test_login_is_rate_limited_and_audited(client, settings):
    settings.LOGIN_MAX_FAILURES = 3
    make_user("carol", password="correct horse battery staple")
    for _ in range(3):
        assert client.post("/login/", {"username": "carol", "password": "guess"}).status_code == 200
    refused = client.post("/login/", {"username": "carol", "password": "correct horse battery staple"})
    assert refused.status_code == 429 and b"Too many failed logins" in refused.content
    assert "_auth_user_id" not in client.session  # even the right password is not tried while blocked
    assert AuditEntry.objects.filter(action="auth.login_throttled").count() == 1
    assert AuditEntry.objects.filter(action="auth.login_failed").count() == 3
