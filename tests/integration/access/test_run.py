"""run_command against real OpenSSH through the bastion: parallel runs, timeouts, the output cap, refusals,
permissions, and one audit entry per machine."""

import json
import logging
import socket
import time

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied

from access.models import JumpHost, MachineHostKey
from access.service import can_run_commands, run_command
from audit.models import AuditEntry
from audit.service import Actor
from tests.conftest import make_user

from .conftest import add_target

pytestmark = pytest.mark.django_db


def technician():
    user = make_user()
    user.groups.add(Group.objects.get_or_create(name="technician")[0])
    return user


def alive(pid: int) -> bool:
    """Running, not a zombie: in a container whose PID 1 reaps nothing, a killed orphan stays a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def audit_rows(machine_ids):
    rows = AuditEntry.objects.filter(action="ssh.run").order_by("id")
    return {int(r.object_id): r for r in rows if int(r.object_id) in machine_ids}


def test_runs_on_several_machines_in_parallel_and_audits_each(site, lab):
    machines = [add_target(site.test_rack, lab) for _ in range(3)]
    ids = [m.pk for m in machines]
    user = technician()

    started = time.monotonic()
    results = run_command(
        ids, "sleep 1; hostname; echo oops >&2", actor=Actor.for_user(user), timeout_s=10, max_output=4096
    )
    elapsed = time.monotonic() - started

    assert [r.machine_id for r in results] == ids
    assert all(r.ok and r.exit_status == 0 and r.reason == "" for r in results), results
    assert results[0].output == f"{socket.gethostname()}\noops\n"
    assert elapsed < 2.9, "three one-second commands ran one after another"
    rows = audit_rows(set(ids))
    assert set(rows) == set(ids)
    for machine in machines:
        row = rows[machine.pk]
        assert (row.actor_label, row.actor_user_id, row.object_label) == (user.username, user.pk, machine.hostname)
        assert row.details["command"] == "sleep 1; hostname; echo oops >&2"
        assert row.details["exit_status"] == 0
        assert row.details["output"] == f"{socket.gethostname()}\noops\n"
        assert row.details["duration_s"] >= 1


def test_a_failing_command_reports_its_exit_status(site, lab):
    machine = add_target(site.test_rack, lab)
    [result] = run_command([machine.pk], "echo no; exit 3", actor=Actor.system("test"), timeout_s=10, max_output=100)
    assert (result.ok, result.exit_status, result.output, result.reason) == (False, 3, "no\n", "")
    assert audit_rows({machine.pk})[machine.pk].details["exit_status"] == 3


def test_the_timeout_stops_a_command(site, lab):
    machine = add_target(site.test_rack, lab)
    pidfile = lab.workdir / f"timeout-{machine.pk}"

    started = time.monotonic()
    [result] = run_command(
        [machine.pk],
        f"echo started; echo $$ > {pidfile}; exec sleep 30",
        actor=Actor.system("test"),
        timeout_s=1,
        max_output=100,
    )

    assert time.monotonic() - started < 5
    assert (result.exit_status, result.reason, result.output) == (None, "CommandTimeout", "started\n")
    row = audit_rows({machine.pk})[machine.pk]
    assert (row.details["reason"], row.details["exit_status"]) == ("CommandTimeout", None)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the command outlived its timeout"


def test_output_is_capped_but_the_command_runs_to_its_end(site, lab):
    machine = add_target(site.test_rack, lab)
    [result] = run_command(
        [machine.pk],
        "head -c 300000 /dev/zero | tr '\\0' x; echo; exit 4",
        actor=Actor.system("test"),
        timeout_s=10,
        max_output=1000,
    )
    assert result.output == "x" * 1000
    assert result.truncated and result.exit_status == 4
    row = audit_rows({machine.pk})[machine.pk]
    assert row.details["output"] == "x" * 1000 and row.details["truncated"] is True


def test_a_wrong_bastion_host_key_refuses_every_machine_and_runs_nothing(site, lab):
    JumpHost.objects.filter(site=site).update(host_key=lab.stranger_host_key_pub)
    machines = [add_target(site.test_rack, lab) for _ in range(2)]
    marker = lab.workdir / f"bastion-{machines[0].pk}"

    results = run_command(
        [m.pk for m in machines], f"touch {marker}", actor=Actor.system("test"), timeout_s=5, max_output=100
    )

    assert [r.reason for r in results] == ["BastionHostKeyMismatch"] * 2
    assert all(r.exit_status is None for r in results)
    assert "offered host key" in results[0].message
    assert not marker.exists()
    rows = audit_rows({m.pk for m in machines})
    assert [rows[m.pk].details["reason"] for m in machines] == ["BastionHostKeyMismatch"] * 2


def test_a_machine_without_a_pinned_or_with_another_host_key_is_refused(site, lab):
    unpinned = add_target(site.test_rack, lab, pin=False)
    changed = add_target(site.test_rack, lab, pin=False)
    MachineHostKey.objects.create(machine=changed, host_key=lab.stranger_host_key_pub)
    good = add_target(site.test_rack, lab)
    marker = lab.workdir / f"target-{good.pk}"

    results = run_command(
        [unpinned.pk, changed.pk, good.pk],
        f"touch {marker}-$(hostname)-$$",
        actor=Actor.system("test"),
        timeout_s=5,
        max_output=100,
    )

    assert [r.reason for r in results] == ["TargetHostKeyUnknown", "TargetHostKeyMismatch", ""]
    assert changed.hostname in results[1].message
    assert len(list(lab.workdir.glob(f"target-{good.pk}-*"))) == 1, "only the pinned machine ran it"


def test_viewers_cannot_run_commands(site, lab):
    machine = add_target(site.test_rack, lab)
    viewer = make_user()
    assert not can_run_commands(viewer)
    with pytest.raises(PermissionDenied):
        run_command([machine.pk], "true", actor=Actor.for_user(viewer), timeout_s=5, max_output=100)
    assert not AuditEntry.objects.filter(action="ssh.run").exists()


def test_who_may_run_commands():
    staff = make_user()  # is_staff alone grants nothing: roles do
    staff.is_staff = True
    staff.save()
    viewer = make_user()
    viewer.groups.add(Group.objects.get_or_create(name="viewer")[0])
    admin_member = make_user()
    admin_member.groups.add(Group.objects.get_or_create(name="admin")[0])
    inactive = technician()
    inactive.is_active = False
    inactive.save()
    assert can_run_commands(technician()) and can_run_commands(admin_member)
    assert can_run_commands(make_user(superuser=True))
    assert not can_run_commands(make_user()) and not can_run_commands(inactive) and not can_run_commands(None)
    assert not can_run_commands(staff) and not can_run_commands(viewer)


def test_no_key_reaches_the_audit_log(site, lab):
    machine = add_target(site.test_rack, lab)
    JumpHost.objects.filter(site=site).update(port=1)  # a failure path, with its message, is audited too
    run_command([machine.pk], "true", actor=Actor.system("test"), timeout_s=5, max_output=100)
    hop = JumpHost.objects.get(site=site)
    dump = json.dumps([e.details for e in AuditEntry.objects.all()])
    for secret in (lab.jump_key, lab.login_key, hop.private_key_ciphertext):
        assert secret.strip().splitlines()[1 if "BEGIN" in secret else 0][:40] not in dump
    assert "BEGIN OPENSSH" not in dump


def test_no_key_reaches_the_logs_even_at_debug_level(site, lab, caplog):
    caplog.set_level(logging.DEBUG)
    machine = add_target(site.test_rack, lab)
    run_command([machine.pk], "true", actor=Actor.system("test"), timeout_s=5, max_output=100)
    assert "Auth for user" in caplog.text, "asyncssh's log was captured"
    for secret in (lab.jump_key, lab.login_key):
        for line in secret.strip().splitlines()[1:-1]:
            assert line not in caplog.text
