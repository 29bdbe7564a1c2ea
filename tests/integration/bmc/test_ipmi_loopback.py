"""The IPMI driver against the in-process loopback BMC (provisioner.lab.bmc), and that BMC against ipmitool."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from provisioner.bmc import BmcAuthError, BmcTarget, BmcTimeout, BmcUnreachable, BootDevice, PowerState, get_driver

from .conftest import IPMI_PASSWORD, IPMI_USER, ipmitool


def test_every_method_against_the_loopback_bmc(loopback_bmc):
    bmc = loopback_bmc()
    driver = get_driver("ipmi", bmc.target())
    assert driver.power_state() == PowerState.OFF
    assert driver.get_boot_device() == BootDevice.DEFAULT
    driver.set_boot_device(BootDevice.PXE, once=True, uefi=True)
    assert driver.get_boot_device() == BootDevice.PXE
    assert bmc.boot_flags == 0x80 | 0x20  # valid, one-time, EFI
    driver.power_on()
    driver.power_on()  # already on: success
    assert driver.power_state() == PowerState.ON
    assert bmc.boots == [BootDevice.PXE]
    # The one-time override was used up by that power-on.
    assert driver.get_boot_device() == BootDevice.DEFAULT
    driver.set_boot_device(BootDevice.DISK, once=False)
    driver.power_cycle()  # on: a reset, which boots again
    driver.power_cycle()
    assert bmc.boots == [BootDevice.PXE, BootDevice.DISK, BootDevice.DISK]  # persistent stays
    driver.power_off(soft=True)
    assert driver.power_state() == PowerState.OFF
    driver.power_cycle()  # off: a power-on
    assert bmc.powered_on is True
    driver.power_off()
    assert bmc.powered_on is False
    assert 0 < driver.ping() < 0.1


def test_power_on_hook_tells_the_machine_what_to_boot(loopback_bmc):
    bmc = loopback_bmc()
    booted = threading.Event()
    seen: list[BootDevice] = []

    def on_power_on(device: BootDevice) -> None:
        seen.append(device)
        booted.set()

    bmc.on_power_on.append(on_power_on)
    driver = get_driver("ipmi", bmc.target())
    driver.set_boot_device(BootDevice.PXE)
    driver.power_on()
    assert booted.wait(2)
    assert seen == [BootDevice.PXE]


def test_ipmitool_drives_the_loopback_bmc(loopback_bmc):
    bmc = loopback_bmc()
    assert "Chassis Power is off" in ipmitool(bmc.port, "chassis", "power", "status")
    ipmitool(bmc.port, "chassis", "bootdev", "pxe")
    assert bmc.boot_device == BootDevice.PXE
    ipmitool(bmc.port, "chassis", "power", "on")
    assert bmc.powered_on is True
    assert bmc.boots == [BootDevice.PXE]
    assert "Chassis Power is on" in ipmitool(bmc.port, "chassis", "power", "status")


def test_wrong_password_and_unknown_user_are_auth_errors_at_once(loopback_bmc):
    bmc = loopback_bmc()
    for attempt, (username, password) in enumerate(((IPMI_USER, "wrong-password"), ("nobody", IPMI_PASSWORD)), 1):
        driver = get_driver("ipmi", BmcTarget(bmc.address, bmc.port, username, password, timeout_s=5))
        started = time.monotonic()
        with pytest.raises(BmcAuthError) as caught:
            driver.power_state()
        assert time.monotonic() - started < 0.5
        assert not caught.value.retryable
        # One password check per call: nothing retried behind the caller's back to run into a lockout.
        assert bmc.login_attempts == attempt
    assert bmc.commands == []


def test_rejecting_credentials_fails_a_fresh_login(loopback_bmc):
    bmc = loopback_bmc()
    bmc.reject_credentials = True
    with pytest.raises(BmcAuthError, match="Incorrect password"):
        get_driver("ipmi", bmc.target()).ping()


def test_a_silent_bmc_times_out_at_our_deadline(loopback_bmc):
    bmc = loopback_bmc()
    bmc.drop_packets = 1.0
    driver = get_driver("ipmi", bmc.target(timeout_s=0.3))
    started = time.monotonic()
    with pytest.raises(BmcTimeout):
        driver.power_state()
    assert 0.25 < time.monotonic() - started < 0.5


def test_a_bmc_that_goes_silent_during_login_does_not_hang(loopback_bmc):
    bmc = loopback_bmc(latency_s=0.05)
    driver = get_driver("ipmi", bmc.target(timeout_s=0.3))
    blocker = threading.Timer(0.06, lambda: setattr(bmc, "drop_packets", 1.0))
    blocker.start()  # lands after the first login packet is answered
    started = time.monotonic()
    with pytest.raises(BmcUnreachable):
        driver.power_state()
    assert time.monotonic() - started < 0.5
    blocker.join()


def test_a_dead_bmc_is_unreachable_and_others_are_unaffected(loopback_bmc):
    dying, healthy = loopback_bmc(), loopback_bmc(powered_on=True)
    dying_driver = get_driver("ipmi", dying.target(timeout_s=0.3))
    healthy_driver = get_driver("ipmi", healthy.target(timeout_s=0.3))
    assert dying_driver.power_state() == PowerState.OFF
    dying.die()
    with ThreadPoolExecutor(2) as pool:
        dead = pool.submit(dying_driver.power_on)
        started = time.monotonic()
        assert healthy_driver.power_state() == PowerState.ON
        assert time.monotonic() - started < 0.1  # not stuck behind the dead one
        with pytest.raises(BmcUnreachable):
            dead.result()


def test_latency_slows_answers_but_they_come(loopback_bmc):
    slow = loopback_bmc(latency_s=0.02)
    driver = get_driver("ipmi", slow.target(timeout_s=2))
    started = time.monotonic()
    assert driver.power_state() == PowerState.OFF
    assert time.monotonic() - started >= 0.02


def test_concurrent_calls_to_many_bmcs_are_fast(loopback_bmc):
    bmcs = [loopback_bmc(powered_on=bool(i % 2)) for i in range(10)]
    drivers = [get_driver("ipmi", bmc.target()) for bmc in bmcs]
    with ThreadPoolExecutor(len(drivers)) as pool:
        list(pool.map(lambda d: d.ping(), drivers))  # log in once
        durations = []

        def timed(driver):
            started = time.monotonic()
            state = driver.power_state()
            durations.append(time.monotonic() - started)
            return state

        for _ in range(5):
            states = list(pool.map(timed, drivers))
            assert states == [PowerState.ON if i % 2 else PowerState.OFF for i in range(10)]
    # pyghmi's synchronous client stalls 0.5-1 s here now and then; ours must not. The bound is that
    # stall, not a speed target (bench/bmc.py measures speed): inside the whole suite on 2 busy cores
    # a round of ten calls has taken 140 ms.
    assert max(durations) < 0.4


def test_a_forked_child_gets_a_working_driver(loopback_bmc):
    bmc = loopback_bmc(powered_on=True)
    target = bmc.target(timeout_s=1)
    assert get_driver("ipmi", target).power_state() == PowerState.ON  # parent has sessions and threads
    pid = os.fork()
    if pid == 0:  # the child, as in an RQ work horse
        try:
            ok = get_driver("ipmi", target).power_state() == PowerState.ON
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 5
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        assert time.monotonic() < deadline, "forked child hung"
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    assert get_driver("ipmi", target).power_state() == PowerState.ON  # parent unaffected


def test_a_rebooted_bmc_is_reached_again_within_the_same_call(loopback_bmc):
    first = loopback_bmc(powered_on=True)
    driver = get_driver("ipmi", first.target(timeout_s=3))
    assert driver.power_state() == PowerState.ON
    port = first.port
    first.stop()
    # Same address and port, but it forgot every session, as a BMC does when it reboots.
    second = loopback_bmc(port=port)
    started = time.monotonic()
    assert driver.power_state() == PowerState.OFF
    assert time.monotonic() - started < 1.5  # one retransmit interval, then a fresh login
    assert second.commands == [(0, 1, None)]


def test_a_lost_packet_is_retried_within_the_call(loopback_bmc):
    bmc = loopback_bmc(powered_on=True)
    driver = get_driver("ipmi", bmc.target(timeout_s=3))
    bmc.drop_next = 1  # the first login packet
    started = time.monotonic()
    assert driver.power_state() == PowerState.ON
    assert 0.4 < time.monotonic() - started < 1.5  # pyghmi's first retransmit comes after 0.5-1 s
    bmc.drop_next = 1  # a command on the established session
    started = time.monotonic()
    assert driver.power_state() == PowerState.ON
    assert 0.4 < time.monotonic() - started < 1.5


def test_the_driver_survives_pyghmis_io_thread_dying(loopback_bmc):
    from pyghmi.ipmi.private import session as pyghmi_session

    bmc = loopback_bmc(powered_on=True)
    driver = get_driver("ipmi", bmc.target(timeout_s=2))
    assert driver.power_state() == PowerState.ON
    worker = pyghmi_session.iothread
    worker.running = False  # what an exception inside its loop amounts to: the thread ends
    pyghmi_session.iosockets[0].sendto(b"\x01", (pyghmi_session.myself, pyghmi_session.iosockets[0].getsockname()[1]))
    threading.Thread.join(worker, timeout=2)  # its own join() logs every session out first
    assert not worker.is_alive()
    assert driver.power_state() == PowerState.ON
    assert pyghmi_session.iothread is not worker and pyghmi_session.iothread.is_alive()


def test_stop_does_not_wait_out_a_long_latency(loopback_bmc):
    bmc = loopback_bmc(latency_s=30)
    with pytest.raises(BmcTimeout):
        get_driver("ipmi", bmc.target(timeout_s=0.1)).power_state()
    started = time.monotonic()
    bmc.stop()
    assert time.monotonic() - started < 0.5
    assert not bmc._thread.is_alive()


def wait_until(predicate, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_close_sessions_frees_the_bmcs_session_slot(loopback_bmc):
    from provisioner.bmc import close_sessions

    bmc = loopback_bmc(powered_on=True)
    driver = get_driver("ipmi", bmc.target())
    assert driver.power_state() == PowerState.ON
    assert len(bmc._sessions) == 1
    close_sessions()
    assert wait_until(lambda: len(bmc._sessions) == 0)
    assert driver.power_state() == PowerState.ON  # a fresh login
    assert bmc.login_attempts == 2


def test_a_process_that_exits_logs_out(loopback_bmc):
    import subprocess
    import sys

    from .conftest import ROOT

    bmc = loopback_bmc(powered_on=True)
    code = (
        "import sys\n"
        "from provisioner.bmc import BmcTarget, get_driver\n"
        "port = int(sys.argv[1])\n"
        f"print(get_driver('ipmi', BmcTarget('127.0.0.1', port, {IPMI_USER!r}, {IPMI_PASSWORD!r})).power_state())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(bmc.port)], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "on", result.stderr
    assert bmc.login_attempts == 1
    assert wait_until(lambda: len(bmc._sessions) == 0)


def test_a_refused_command_is_unsupported_with_the_completion_code(loopback_bmc):
    from provisioner.bmc import BmcUnsupported

    bmc = loopback_bmc()
    driver = get_driver("ipmi", bmc.target())
    with pytest.raises(BmcUnsupported, match=r"refused with completion code 0xC1 \(Invalid command\)") as caught:
        driver._call("OEM query", 0x30, 0x01)  # an OEM command the BMC does not know
    assert not caught.value.retryable
    with pytest.raises(BmcUnsupported, match="cannot set boot device other"):
        driver.set_boot_device(BootDevice.OTHER)
    assert bmc.commands == [(0x30, 0x01, None)]


def test_idle_sessions_are_logged_out(loopback_bmc, monkeypatch):
    from provisioner.bmc import ipmi_loop

    monkeypatch.setattr(ipmi_loop, "IDLE_LOGOUT_S", 0.2)
    bmc = loopback_bmc(powered_on=True)
    driver = get_driver("ipmi", bmc.target())
    assert driver.power_state() == PowerState.ON
    assert len(bmc._sessions) == 1
    # BMCs expire idle sessions on their own; a logout before that keeps us from ever using a dead one.
    assert wait_until(lambda: len(bmc._sessions) == 0, within_s=2.0)
    assert driver.power_state() == PowerState.ON
    assert bmc.login_attempts == 2
