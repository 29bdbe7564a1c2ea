"""Discovery mode against a real HTTP server on 127.0.0.1 that speaks the discovery protocol: register, poll,
inventory and poweroff, the waits and refusals, the key kept across restarts, and the kernel command line that
switches the agent into it."""

import json
import stat
import subprocess
import sys
import threading

import pytest

from provisioner.agent import build, discovery
from provisioner.agent.discovery import Discovery, DiscoveryClient
from provisioner.agent.loop import EXIT_DONE, EXIT_INSTALL_ENDED, EXIT_REFUSED, EXIT_REJECTED, EXIT_STOPPED
from tests.unit.agent import servers
from tests.unit.agent.conftest import MIB, make_disk
from tests.unit.agent.servers import DiscoveryPlane

MAC = "52:54:00:ab:cd:01"


@pytest.fixture
def plane():
    state = DiscoveryPlane()
    server, url = servers.discovery_plane(state)
    state.url = url
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def machine(sandbox):
    make_disk(sandbox, "sda", 4 * MIB)
    (sandbox.root / "machine.json").write_text(json.dumps({
        "nics": [{"name": "eno1", "mac": "52:54:00:ab:cd:00", "link": False},
                 {"name": "eno2", "mac": MAC, "speed_mbps": 10000,
                  "lldp": {"chassis_id": "leaf-1", "port_id": "swp7"}}],
        "bmc": {"address": "10.0.0.9", "mac": "52:54:00:ff:00:01", "source": "dhcp"},
    }))  # fmt: skip
    return sandbox


def _discovery(plane, host, **kwargs) -> Discovery:
    kwargs.setdefault("mac", MAC)
    return Discovery(DiscoveryClient(plane.url), host, host.root / "state", backoff_base_s=0.02, backoff_cap_s=0.1,
                     **kwargs)  # fmt: skip


def test_register_poll_inventory_then_power_off(plane, machine):
    plane.poll_answers = [(200, {"task": None, "poll_s": 0.05})] * 2
    plane.tasks = [{"id": "t1", "kind": "inventory"}, {"id": "t2", "kind": "poweroff"}]

    assert _discovery(plane, machine).run() == EXIT_DONE

    registered = plane.registered[0]
    assert registered["mac"] == MAC and len(registered["key"]) == 64 and int(registered["key"], 16) >= 0
    facts = registered["facts"]
    # The full facts, as the commission task reports them.
    assert facts["nics"][1]["lldp"] == {"chassis_id": "leaf-1", "system_name": "", "port_id": "swp7",
                                        "port_description": ""}  # fmt: skip
    assert facts["bmc"]["address"] == "10.0.0.9" and facts["disks"][0]["transport"] == "sata"
    assert plane.facts == [{"task": "t1", "facts": facts}]
    assert plane.done == [{"task": "t2"}]
    assert (machine.root / "poweroff-requested").exists()
    # Register goes without a key header, everything after it with the key.
    assert [(path, auth.split(" ")[0]) for _, path, auth in plane.requests][:2] == [
        ("register", ""), ("41/poll", "Discovery")
    ]  # fmt: skip
    assert all(auth == f"Discovery {registered['key']}" for _, path, auth in plane.requests if path != "register")
    key_file = machine.root / "state" / "discovery-key"
    assert key_file.read_text().strip() == registered["key"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_restarted_agent_registers_with_the_same_key(plane, machine):
    plane.tasks = [{"id": "t1", "kind": "poweroff"}]
    assert _discovery(plane, machine).run() == EXIT_DONE
    plane.tasks = [{"id": "t2", "kind": "poweroff"}]
    assert _discovery(plane, machine).run() == EXIT_DONE
    assert plane.registered[0]["key"] == plane.registered[1]["key"]
    # A lost state directory makes a new key, which the control plane refuses for this MAC.
    (machine.root / "state" / "discovery-key").unlink()
    assert _discovery(plane, machine).run() == EXIT_REFUSED


def test_too_many_requests_waits_as_long_as_asked(plane, machine):
    plane.register_answers = [(429, {"reason": "TooManyRequests", "retry_after_s": 0.4})]
    plane.tasks = [{"id": "t1", "kind": "poweroff"}]
    assert _discovery(plane, machine).run() == EXIT_DONE
    first, second = [at for at, path, _ in plane.requests if path == "register"]
    assert 0.4 <= second - first < 1.5


def test_server_errors_and_a_dead_network_are_retried(plane, machine, free_port):
    plane.register_answers = [(503, {}), (500, {"reason": "ServerError"})]
    plane.poll_answers = [(502, {})]
    plane.tasks = [{"id": "t1", "kind": "poweroff"}]
    assert _discovery(plane, machine).run() == EXIT_DONE
    assert plane.paths().count("register") == 3

    # Nothing listens: the agent keeps trying until stopped.
    agent = Discovery(DiscoveryClient(f"http://127.0.0.1:{free_port}"), machine, machine.root / "state", mac=MAC,
                      backoff_base_s=0.01, backoff_cap_s=0.02)  # fmt: skip
    stopper = threading.Timer(0.3, agent.stop)
    stopper.start()
    assert agent.run() == EXIT_STOPPED


def test_a_known_machine_reboots_into_its_own_boot_config(plane, machine):
    plane.register_answers = [(403, {"reason": "KnownMachine", "message": "aa:bb is web01", "then": "reboot"})]
    assert _discovery(plane, machine).run() == EXIT_DONE
    assert (machine.root / "reboot-requested").exists()
    assert plane.paths() == ["register"]


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (403, {"reason": "DiscoveryOff", "message": "discovery is off at this site"}, EXIT_REFUSED),
        (403, {"reason": "NotProvisioningAddress", "message": "10.9.9.9 is outside"}, EXIT_REFUSED),
        (403, {"reason": "Discarded", "message": "discarded"}, EXIT_REFUSED),
        (409, {"reason": "KeyMismatch", "message": "another key"}, EXIT_REFUSED),
        (400, {"reason": "InvalidRequest", "message": "facts: not an object"}, EXIT_REJECTED),
        (413, {"reason": "TooLarge", "message": "over 256 KiB"}, EXIT_REJECTED),
    ],
)
def test_refusals_end_the_agent(plane, machine, status, body, code, caplog):
    plane.register_answers = [(status, body)]
    assert _discovery(plane, machine).run() == code
    assert plane.paths() == ["register"]
    assert body["message"] in caplog.text
    assert not (machine.root / "reboot-requested").exists()


def test_a_registration_that_is_gone_ends_the_agent(plane, machine):
    plane.poll_answers = [(200, {"task": None, "poll_s": 0.05})]
    plane.discarded = True
    assert _discovery(plane, machine).run() == EXIT_INSTALL_ENDED
    assert plane.paths() == ["register", "41/poll"]


def test_an_unknown_task_kind_is_reported_and_ignored(plane, machine):
    plane.tasks = [{"id": "t1", "kind": "wipe_disks"}, {"id": "t2", "kind": "poweroff"}]
    assert _discovery(plane, machine).run() == EXIT_DONE
    assert plane.done == [{"task": "t1", "error": "UnknownTaskKind"}, {"task": "t2"}]
    assert not (machine.root / "commands.log").exists()  # no discovery task touches a disk


def test_without_bootif_the_first_nic_with_link_names_the_machine(plane, machine):
    plane.tasks = [{"id": "t1", "kind": "poweroff"}]
    assert _discovery(plane, machine, mac="").run() == EXIT_DONE
    assert plane.registered[0]["mac"] == MAC  # eno1 has no link


def test_boot_mac_from_bootif():
    assert discovery.boot_mac({"BOOTIF": "01-52-54-00-AB-CD-01"}) == MAC
    assert discovery.boot_mac({"BOOTIF": "52-54-00-ab-cd-01"}) == ""
    assert discovery.boot_mac({}) == ""


# -- the command line -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    return build.build(tmp_path_factory.mktemp("dist") / "provisioner-agent.pyz")


def _agent(pyz, machine, *args, cmdline: str):
    cmdline_file = machine.root / "cmdline"
    cmdline_file.write_text(cmdline + "\n")
    argv = [sys.executable, "-I", str(pyz), "--sandbox", str(machine.root), "--cmdline", str(cmdline_file),
            "--backoff-base", "0.02", "--backoff-cap", "0.1", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={})


def test_a_discovery_boot_runs_discovery_without_a_token(pyz, plane, machine):
    plane.tasks = [{"id": "t1", "kind": "inventory"}, {"id": "t2", "kind": "poweroff"}]
    cmdline = (f"initrd=initrd.img console=ttyS0 provisioner.mode=discover provisioner.url={plane.url} "
               f"provisioner.lldp_s=0 BOOTIF=01-52-54-00-ab-cd-01")  # fmt: skip
    done = _agent(pyz, machine, cmdline=cmdline)
    assert done.returncode == 0, done.stderr
    assert "discovery mode" in done.stderr
    assert plane.registered[0]["mac"] == MAC and plane.done == [{"task": "t2"}]
    assert (machine.root / "poweroff-requested").exists()


def test_the_discover_flag_and_bad_lldp_seconds(pyz, plane, machine):
    plane.tasks = [{"id": "t1", "kind": "poweroff"}]
    done = _agent(pyz, machine, "--discover", "--url", plane.url, "--lldp-s", "0", cmdline="quiet")
    assert done.returncode == 0, done.stderr
    assert plane.registered[0]["mac"] == MAC
    bad = _agent(pyz, machine, cmdline=f"provisioner.mode=discover provisioner.url={plane.url} provisioner.lldp_s=x")
    assert bad.returncode == 2 and "provisioner.lldp_s=x is not a number of seconds" in bad.stderr
    # Without discovery, a boot with no token is still a usage error.
    plain = _agent(pyz, machine, cmdline=f"provisioner.url={plane.url}")
    assert plain.returncode == 2 and "no token" in plain.stderr
