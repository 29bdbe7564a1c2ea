"""create_bmc_user: the slot choice, the whole ipmitool sequence against OpenIPMI's BMC simulator (over its LAN
interface, the in-band commands being the same), and the task in the sandbox. The password must never be on a
command line, in a log line, a progress message, a result or an error."""

import json
import logging
import os
import shutil
import stat
import subprocess
import time

import pytest

from provisioner.agent import ipmi, tools
from provisioner.agent.context import Context
from provisioner.agent.host import SandboxHost
from provisioner.agent.tasks import DESTRUCTIVE, run_task
from tests.unit.agent.conftest import RecordingChannel

PASSWORD = "Bmc-7Kq!pw-x9"  # distinctive, so a leak anywhere is easy to find
USERS = [(1, "", "Unknown (0x00)"), (2, "root", "ADMINISTRATOR"), (3, "", "Unknown (0x00)"),
         (4, "provisioner", "ADMINISTRATOR"), (5, "", "Unknown (0x00)")]  # fmt: skip


def test_slot_choice():
    assert ipmi.choose_slot(USERS, "provisioner", None) == 4  # the user already there
    assert ipmi.choose_slot(USERS, "maas", None) == 3  # the first free slot, never the anonymous user 1
    assert ipmi.choose_slot(USERS, "maas", 5) == 5
    assert ipmi.choose_slot(USERS, "provisioner", 4) == 4
    with pytest.raises(ipmi.UserFailed, match="slot 2 holds the user 'root'") as taken:
        ipmi.choose_slot(USERS, "maas", 2)
    assert taken.value.reason == "BmcUserSlotTaken"
    with pytest.raises(ipmi.UserFailed, match="no user slot 9") as missing:
        ipmi.choose_slot(USERS, "maas", 9)
    assert missing.value.reason == "BmcUserSlotMissing"
    full = [(1, "", "x"), (2, "root", "ADMINISTRATOR"), (3, "ops", "OPERATOR")]
    with pytest.raises(ipmi.UserFailed) as no_room:
        ipmi.choose_slot(full, "maas", None)
    assert no_room.value.reason == "BmcUserSlotsFull"


# -- against ipmi_sim -------------------------------------------------------------------------------------------


@pytest.fixture
def bmc(tmp_path, monkeypatch):
    if shutil.which("ipmi_sim") is None or shutil.which("ipmitool") is None:
        pytest.skip("ipmi_sim and ipmitool are needed (Debian packages openipmi and ipmitool, .ci/apt-packages)")
    from tests.integration.bmc.conftest import IPMI_PASSWORD, IPMI_USER, IpmiSim

    sim = IpmiSim(tmp_path / "sim").start()
    # -E: the session password of the LAN interface comes from the environment, as the tests' own ipmitool does.
    monkeypatch.setenv("IPMI_PASSWORD", IPMI_PASSWORD)
    prefix = ("ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(sim.port), "-U", IPMI_USER, "-E")
    calls: list[list[str]] = []

    def run(argv, timeout, **kwargs):
        calls.append(list(argv))
        return tools.run(argv, timeout, **kwargs)

    lan = ipmi.Ipmitool(run, prefix)
    for setting in (("ipsrc", "static"), ("ipaddr", "10.20.30.40"), ("macaddr", "3c:ec:ef:12:34:56")):
        assert lan.call("lan", "set", "1", *setting).returncode == 0
    calls.clear()
    yield sim, lan, calls
    sim.kill()


def _login(sim, user: str, password: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(sim.port), "-U", user, "-E",
         "chassis", "power", "status"],
        env={**os.environ, "IPMI_PASSWORD": password}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_create_user_on_a_real_ipmi_stack(bmc, caplog):
    sim, lan, calls = bmc
    lines = []
    caplog.set_level(logging.DEBUG)
    made = ipmi.create_user(lan, "provisioner", PASSWORD, log=lines.append)
    assert made == {"user_id": 3, "channel": 1, "address": "10.20.30.40", "mac": "3c:ec:ef:12:34:56"}
    # The new user logs in over the LAN with its password, as the control plane will.
    assert "Chassis Power is off" in _login(sim, "provisioner", PASSWORD).stdout
    assert _login(sim, "provisioner", "wrong-password").returncode != 0
    assert (3, "provisioner", "ADMINISTRATOR") in lan.users(1)
    # The password went to ipmitool on standard input only.
    assert not any(PASSWORD in arg for call in calls for arg in call)
    assert ["user", "set", "password", "3"] in [call[-4:] for call in calls]
    assert PASSWORD not in "\n".join(lines) + caplog.text

    # Again: the same slot, nothing renamed, still working.
    calls.clear()
    assert ipmi.create_user(lan, "provisioner", "Second-pw-42")["user_id"] == 3
    assert not any(call[-5:-1] == ["user", "set", "name", "3"] for call in calls)
    assert _login(sim, "provisioner", "Second-pw-42").returncode == 0


def test_a_twenty_character_password_goes_through_the_prompt_whole(bmc):
    """ipmitool takes the 20-byte (IPMI 2.0) form for a password over 16 characters. ipmi_sim keeps only 16 bytes
    of any password and answers every `user test` with Success, so what it stored is read from its state file."""
    sim, lan, _ = bmc
    long_password = "Twenty-chars-pw-1234"
    assert ipmi.create_user(lan, "ops", long_password, user_id=5)["user_id"] == 5
    # The simulator writes its state file a moment after a change.
    deadline, users = time.monotonic() + 5, ""
    while "5.username:d:ops" not in users and time.monotonic() < deadline:
        time.sleep(0.05)
        users = "".join(f.read_text(errors="replace") for f in (sim.dir / "state").rglob("users.mc20"))
    assert "5.passwd:d:Twenty-chars-pw-\\00" in users and "5.username:d:ops\\00" in users


def test_a_slot_holding_another_user_is_refused(bmc):
    _, lan, _ = bmc
    with pytest.raises(ipmi.UserFailed, match="slot 2 holds the user 'admin'"):
        ipmi.create_user(lan, "provisioner", PASSWORD, user_id=2)


def test_no_bmc_in_band_is_said_in_words(tmp_path):
    calls = []

    def run(argv, timeout, **kwargs):
        calls.append(argv)
        return tools.Completed(1, "modprobe: ERROR: could not insert 'ipmi_si': No such device\n")

    with pytest.raises(ipmi.NoBmc, match="ipmi_si found none: modprobe ipmi_si exit status 1: modprobe: ERROR"):
        ipmi.load_driver(run, tmp_path, wait_s=0, sys_root=tmp_path)
    assert calls == [["modprobe", "-q", "ipmi_devintf"], ["modprobe", "-q", "ipmi_si"]]
    # A BMC on SMBus: ipmi_ssif is loaded, so the device node is waited for.
    (tmp_path / "module/ipmi_ssif").mkdir(parents=True)
    with pytest.raises(ipmi.NoBmc, match="no .*ipmi0 0.3 s after loading its driver"):
        ipmi.load_driver(run, tmp_path, wait_s=0.3, sys_root=tmp_path)
    (tmp_path / "ipmi0").touch()
    ipmi.load_driver(run, tmp_path)
    assert len(calls) == 4  # the device is there: nothing to load


# -- the task ---------------------------------------------------------------------------------------------------


def _bmc_machine(sandbox: SandboxHost, bmc: dict | None) -> None:
    machine = {"nics": [{"name": "eno1", "mac": "52:54:00:00:00:01"}]}
    if bmc is not None:
        machine["bmc"] = bmc
    (sandbox.root / "machine.json").write_text(json.dumps(machine))


def test_task_in_the_sandbox_writes_the_user_for_the_lab_bmc(sandbox, ctx):
    _bmc_machine(sandbox, {"address": "127.0.0.1", "mac": "52:54:00:ff:00:01", "source": "static"})
    result = run_task(ctx, "create_bmc_user", {"username": "provisioner", "password": PASSWORD})
    assert result.ok, result
    assert json.loads(result.output) == {"user_id": 3, "channel": 1, "address": "127.0.0.1",
                                         "mac": "52:54:00:ff:00:01"}  # fmt: skip
    written = sandbox.root / "bmc-user.json"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert json.loads(written.read_text()) == {
        "username": "provisioner",
        "password": PASSWORD,
        "user_id": 3,
        "channel": 1,
        "privilege": "administrator",
        "enabled": True,
    }
    assert PASSWORD not in result.output + result.message + ctx.channel._message + "\n".join(ctx.channel.lines)
    # Repeated with another password: the same slot; an explicit slot is honoured.
    again = run_task(ctx, "create_bmc_user", {"username": "provisioner", "password": "x" * 20})
    assert json.loads(again.output)["user_id"] == 3
    chosen = run_task(ctx, "create_bmc_user", {"username": "ops", "password": "y", "user_id": 7})
    assert json.loads(chosen.output)["user_id"] == 7
    assert "create_bmc_user" not in DESTRUCTIVE


def test_task_without_a_bmc_fails_in_words(sandbox, ctx):
    _bmc_machine(sandbox, None)
    result = run_task(ctx, "create_bmc_user", {"username": "provisioner", "password": PASSWORD})
    assert (result.ok, result.reason) == (False, "BmcNotFound")
    assert result.message == 'no BMC answers in-band (machine.json declares no "bmc")'
    assert not (sandbox.root / "bmc-user.json").exists()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"username": "provisioner"}, "password: 1 to 20 characters are required"),
        ({"username": "provisioner", "password": "p" * 21}, "password: 1 to 20 characters are required"),
        ({"username": "provisioner", "password": "new\nline"}, "password: only printable ASCII characters are allowed"),
        ({"username": "prov isioner", "password": PASSWORD}, "username: 1 to 16 letters, digits, '.', '_' or '-', "
                                                             "starting with a letter or digit"),
        ({"username": "provisioner", "password": PASSWORD, "user_id": 1}, "user_id: a whole number from 2 to 63 is "
                                                                          "required"),
        ({"username": "provisioner", "password": PASSWORD, "user_id": True}, "user_id: a whole number from 2 to 63 "
                                                                             "is required"),
    ],
)  # fmt: skip
def test_bad_params_are_refused_without_echoing_the_password(ctx, params, message):
    result = run_task(ctx, "create_bmc_user", params)
    assert (result.reason, result.message) == ("InvalidParams", message)
    assert PASSWORD not in result.message


class RefusingHost(SandboxHost):
    """A BMC whose refusal quotes the password back (no real one does; the task must scrub it all the same)."""

    def create_bmc_user(self, username, password, user_id, log):
        raise ipmi.UserFailed("BmcUserFailed", f"the BMC refused to set the password: bad {password}", password)


def test_a_refusal_that_quotes_the_password_is_scrubbed(tmp_path):
    ctx = Context(RefusingHost(tmp_path / "sandbox"), RecordingChannel())
    result = run_task(ctx, "create_bmc_user", {"username": "provisioner", "password": PASSWORD})
    assert (result.reason, result.message, result.output) == (
        "BmcUserFailed", "the BMC refused to set the password: bad ********", "********"
    )  # fmt: skip
