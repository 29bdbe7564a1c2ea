"""The terminal side: manage.py install / installs, and a failure's alert e-mail."""

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from installs.models import Alert, Install, InstallState


def test_install_and_installs_commands(lab, capsys):
    first, second = lab.machine(), lab.machine()
    call_command("install", first.hostname, second.hostname.upper(), "--profile", "debian-12-preseed", "--stagger", "0")
    out = capsys.readouterr().out
    assert "2 install(s) queued" in out
    installs = list(Install.objects.order_by("pk"))
    assert {i.machine_id for i in installs} == {first.pk, second.pk}
    assert installs[0].batch.stagger_s == 0 and installs[0].requested_by_label.startswith("cli:")
    lab.run_jobs()
    call_command("installs")
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["ID", "MACHINE", "PROFILE", "STATE", "%", "STEP", "/", "REASON", "BY"]
    assert any(first.hostname in line and " booting " in line for line in listing)
    with pytest.raises(CommandError, match=r"is already being installed: install \d+"):
        call_command("install", first.hostname, "--profile", "debian-12-preseed")
    with pytest.raises(CommandError, match="No profile named nope"):
        call_command("install", first.hostname, "--profile", "nope")
    with pytest.raises(CommandError, match="No machine named ghost"):
        call_command("install", "ghost", "--profile", "debian-12-preseed")


def test_a_failed_install_raises_an_alert_and_mails_it(lab, settings):
    settings.ALERT_EMAILS = ["dc-ops@example.net"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    machine = lab.machine()
    lab.bmc(machine).fault = "auth"
    install = lab.install([machine])
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.FAILED
    alert = Alert.objects.get(install=install)
    assert alert.reason == "BmcAuthError" and alert.acknowledged_at is None
    [message] = mail.outbox
    assert message.to == ["dc-ops@example.net"]
    assert message.subject == f"[provisioner] install of {machine.hostname} failed: BmcAuthError"
    assert "rejected the username or password" in message.body
