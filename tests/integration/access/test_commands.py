"""manage.py ssh_run against the loopback bastion and target."""

import io
import socket

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from tests.conftest import make_user

from .conftest import add_target

pytestmark = pytest.mark.django_db


def ssh_run(*args):
    out = io.StringIO()
    call_command("ssh_run", *args, stdout=out)
    return out.getvalue()


def test_runs_on_the_named_machines_and_audits_who_ran_it(site, lab):
    a, b = add_target(site.test_rack, lab), add_target(site.test_rack, lab)

    out = ssh_run(a.hostname, b.hostname, "--", "hostname")

    assert f"==> {a.hostname}: exit 0" in out and f"==> {b.hostname}: exit 0" in out
    assert out.count(socket.gethostname()) == 2
    rows = AuditEntry.objects.filter(action="ssh.run")
    assert {r.object_label for r in rows} == {a.hostname, b.hostname}
    assert all(r.actor_label.startswith("manage.py ssh_run (") for r in rows)


def test_a_failure_on_any_machine_fails_the_command(site, lab):
    machine = add_target(site.test_rack, lab)
    with pytest.raises(CommandError, match="1 of 1"):
        ssh_run(machine.hostname, "--", "exit", "2")


def test_as_user_is_checked_against_the_permission(site, lab):
    machine = add_target(site.test_rack, lab)
    make_user("vic")
    with pytest.raises(CommandError, match="may not run commands"):
        ssh_run("--as-user", "vic", machine.hostname, "--", "true")
    admin = make_user("ada", superuser=True)
    ssh_run("--as-user", "ada", machine.hostname, "--", "true")
    assert AuditEntry.objects.get(action="ssh.run").actor_user_id == admin.pk


def test_usage_errors(site, lab):
    machine = add_target(site.test_rack, lab)
    with pytest.raises(CommandError, match="then --"):
        ssh_run(machine.hostname, "true")
    with pytest.raises(CommandError, match="Unknown machine"):
        ssh_run("nosuchhost", "--", "true")
    with pytest.raises(CommandError, match="a command after it"):
        ssh_run(machine.hostname, "--")
    assert not AuditEntry.objects.filter(action="ssh.run").exists()
