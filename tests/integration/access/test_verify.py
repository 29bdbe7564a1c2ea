"""verify_installed against real OpenSSH: a bastion sshd and a target sshd on loopback, the target being
this very host, so every expectation is read from the local system."""

import os
import shlex
import socket
import time

import asyncssh
import pytest

from access import errors
from access.models import HostKeySource, JumpHost, MachineHostKey, SiteLogin
from access.service import access_problem, verify_installed
from audit.models import AuditEntry
from tests.conftest import make_machine

from . import sshd
from .conftest import add_jump_host, add_target

pytestmark = pytest.mark.django_db


def local_os_release() -> dict:
    values = {}
    with open("/etc/os-release") as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep:
                values[key] = " ".join(shlex.split(value))
    return values


def local_root_disk() -> str | None:
    """The disk under / from /proc and /sys (not lsblk, which the code under test uses), or None when / is
    not on a block device (an overlay in a container)."""
    source = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == "/":
                source = fields[fields.index("-") + 2]
    if not source or not source.startswith("/dev/"):
        return None
    name = os.path.basename(os.path.realpath(source))
    sys_path = f"/sys/class/block/{name}"
    if not os.path.exists(sys_path):
        return None
    if os.path.exists(f"{sys_path}/partition"):
        name = os.path.basename(os.path.dirname(os.path.realpath(sys_path)))
    elif os.listdir(f"{sys_path}/slaves") if os.path.isdir(f"{sys_path}/slaves") else False:
        return None  # LVM or md: the walk down is the code's job; this test keeps to the simple layouts
    return f"/dev/{name}"


def local_expected() -> dict:
    release = local_os_release()
    expected = {
        "hostname": socket.gethostname(),
        "os": {k: release[k] for k in ("ID", "VERSION_ID") if release.get(k)},
        # The loopback interface: present, UP and LOWER_UP on every Linux host, with a fixed MAC and address.
        "mac": "00:00:00:00:00:00",
        "ip": "127.0.0.1",
        "prefix": 8,
    }
    disk = local_root_disk()
    if disk:
        expected["root_disk"] = disk
    return expected


def fingerprint(public_line: str) -> str:
    return asyncssh.import_public_key(public_line).get_fingerprint("sha256")


def test_success_through_the_bastion_checks_everything_and_pins_the_new_host_key(site, lab):
    machine = add_target(site.test_rack, lab, pin=False)
    expected = local_expected()

    checks = verify_installed(machine.pk, expected, timeout_s=15)

    by_name = {c.name: c for c in checks}
    assert set(by_name) == {"hostname", "os_release", "nic"} | ({"root_disk"} if "root_disk" in expected else set())
    assert all(c.ok for c in checks), checks
    assert "127.0.0.1/8" in by_name["nic"].detail
    pin = MachineHostKey.objects.get(machine=machine)
    assert pin.source == HostKeySource.INSTALL
    assert pin.fingerprints.endswith(fingerprint(lab.target.host_key_pub))
    pinned = AuditEntry.objects.get(action="ssh.host_key.pin", object_id=str(machine.pk))
    assert pinned.details["fingerprint"].endswith(fingerprint(lab.target.host_key_pub))
    assert pinned.details["previous"] == ""
    verified = AuditEntry.objects.get(action="ssh.verify", object_id=str(machine.pk))
    assert verified.details["all_ok"] is True
    assert {c["name"] for c in verified.details["checks"]} == set(by_name)


def test_failed_checks_say_what_differs_and_pin_nothing(site, lab):
    machine = add_target(site.test_rack, lab, pin=False)
    expected = {
        **local_expected(),
        "hostname": "someone-else",
        "os": {"ID": "plan9"},
        "mac": "02:00:00:00:00:99",
        "root_disk": "/dev/nonexistent",
    }

    checks = {c.name: c for c in verify_installed(machine.pk, expected, timeout_s=15)}

    assert not any(c.ok for c in checks.values())
    assert "expected someone-else" in checks["hostname"].detail
    assert "plan9" in checks["os_release"].detail
    assert "no interface has MAC 02:00:00:00:00:99" in checks["nic"].detail
    assert "/dev/nonexistent" in checks["root_disk"].detail
    assert not MachineHostKey.objects.filter(machine=machine).exists()
    assert AuditEntry.objects.get(action="ssh.verify", object_id=str(machine.pk)).details["all_ok"] is False


def test_a_proxyjump_chain_of_two_hops(site, lab):
    # Hop 2 is the same bastion again, reached through hop 1: the second connection is tunnelled.
    add_jump_host(site, lab, order=2)
    machine = add_target(site.test_rack, lab, pin=False)

    checks = verify_installed(machine.pk, {"hostname": socket.gethostname()}, timeout_s=15)

    assert [c.ok for c in checks] == [True]
    assert "Accepted publickey" in lab.bastion.log.read_text()


def test_a_wrong_bastion_host_key_is_refused_naming_the_host_and_both_fingerprints(site, lab):
    JumpHost.objects.filter(site=site).update(host_key=lab.stranger_host_key_pub)
    machine = add_target(site.test_rack, lab, pin=False)

    with pytest.raises(errors.BastionHostKeyMismatch) as exc:
        verify_installed(machine.pk, local_expected(), timeout_s=15)

    message = str(exc.value)
    assert exc.value.reason == "BastionHostKeyMismatch" and not exc.value.retryable
    assert f"jump-{site.slug}-1 (127.0.0.1:{lab.bastion.port})" in message
    assert f"offered host key ssh-ed25519 {fingerprint(lab.bastion.host_key_pub)}" in message
    assert f"pinned key is ssh-ed25519 {fingerprint(lab.stranger_host_key_pub)}" in message
    assert not MachineHostKey.objects.filter(machine=machine).exists()
    assert not AuditEntry.objects.filter(action="ssh.verify").exists()


def test_a_wrong_jump_key_is_refused_by_the_bastion(site, lab):
    hop = JumpHost.objects.get(site=site)
    hop.set_private_key(lab.stranger_key)
    hop.save()
    machine = add_target(site.test_rack, lab, pin=False)

    with pytest.raises(errors.BastionAuthFailed) as exc:
        verify_installed(machine.pk, local_expected(), timeout_s=15)
    assert lab.user in str(exc.value)
    assert "PRIVATE KEY" not in str(exc.value)


def test_a_wrong_login_key_is_refused_by_the_target(site, lab):
    login = SiteLogin.objects.get(site=site)
    login.set_private_key(lab.stranger_key)
    login.save()
    machine = add_target(site.test_rack, lab, pin=False)

    with pytest.raises(errors.TargetAuthFailed) as exc:
        verify_installed(machine.pk, local_expected(), timeout_s=15)
    assert machine.hostname in str(exc.value)


def test_bastion_down(site, lab):
    JumpHost.objects.filter(site=site).update(port=sshd.free_port())
    machine = add_target(site.test_rack, lab, pin=False)

    with pytest.raises(errors.BastionUnreachable) as exc:
        verify_installed(machine.pk, local_expected(), timeout_s=15)
    assert exc.value.retryable
    assert "Connection refused" in str(exc.value)


def test_target_down(site, lab):
    closed = sshd.free_port()
    SiteLogin.objects.filter(site=site).update(port=closed)
    machine = add_target(site.test_rack, lab, pin=False)

    with pytest.raises(errors.TargetUnreachable) as exc:
        verify_installed(machine.pk, local_expected(), timeout_s=15)
    assert exc.value.retryable
    assert f"{machine.hostname} (127.0.0.1:{closed})" in str(exc.value)


def test_outside_the_install_window_a_changed_target_host_key_is_refused(site, lab):
    machine = add_target(site.test_rack, lab, pin=False)
    MachineHostKey.objects.create(machine=machine, host_key=lab.stranger_host_key_pub)

    with pytest.raises(errors.TargetHostKeyMismatch) as exc:
        verify_installed(machine.pk, local_expected(), timeout_s=15, accept_new_host_key=False)
    assert fingerprint(lab.target.host_key_pub) in str(exc.value)
    assert MachineHostKey.objects.get(machine=machine).host_key == lab.stranger_host_key_pub


def test_what_is_missing_is_named_before_any_connection(site, lab):
    unracked = make_machine(rack=None, position_u=None)
    assert "not in a rack" in access_problem(unracked.pk)
    machine = add_target(site.test_rack, lab, pin=False)
    assert access_problem(machine.pk) is None
    SiteLogin.objects.filter(site=site).delete()
    assert "no machine login key" in access_problem(machine.pk)
    with pytest.raises(errors.AccessNotConfigured):
        verify_installed(machine.pk, {"hostname": "x"}, timeout_s=5)


def test_a_target_that_accepts_but_never_speaks_ssh_is_unreachable_within_the_timeout(site, lab):
    # A machine still booting, or a firewall that accepts and drops: TCP connects, no SSH banner ever comes.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        SiteLogin.objects.filter(site=site).update(port=silent.getsockname()[1])
        machine = add_target(site.test_rack, lab, pin=False)
        started = time.monotonic()
        with pytest.raises(errors.TargetUnreachable) as exc:
            verify_installed(machine.pk, local_expected(), timeout_s=1)
        assert time.monotonic() - started < 4
        assert "did not answer within 1 s" in str(exc.value)
    finally:
        silent.close()


def test_a_pin_of_a_key_type_the_host_lacks_is_a_mismatch_showing_the_key_it_has(site, lab):
    ecdsa = asyncssh.generate_private_key("ecdsa-sha2-nistp256").export_public_key().decode()
    JumpHost.objects.filter(site=site).update(host_key=ecdsa)
    machine = add_target(site.test_rack, lab, pin=False)

    with pytest.raises(errors.BastionHostKeyMismatch) as exc:
        verify_installed(machine.pk, local_expected(), timeout_s=15)
    message = str(exc.value)
    assert f"offered host key ssh-ed25519 {fingerprint(lab.bastion.host_key_pub)}" in message
    assert "pinned key is ecdsa-sha2-nistp256 SHA256:" in message


def test_with_nothing_to_check_nothing_is_pinned(site, lab):
    machine = add_target(site.test_rack, lab, pin=False)
    assert verify_installed(machine.pk, {}, timeout_s=15) == []
    assert not MachineHostKey.objects.filter(machine=machine).exists()
    assert AuditEntry.objects.get(action="ssh.verify", object_id=str(machine.pk)).details["all_ok"] is False
