"""The datacentre: machines from a config, faults as configured, the inventory the control plane reads, a clean
stop. Its machines run the zipapp agent the lab builds, as a memory OS would."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

from provisioner import pxe
from provisioner.bmc import BmcAuthError, BmcTarget, BmcUnreachable, BootDevice, get_driver
from provisioner.lab.datacentre import Lab, LabConfig, MachineConfig, config_as_dict, demo_machines
from tests.integration.lab.conftest import AGENT_TOKEN, CALLBACK_TOKEN, TOKEN, arm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def specs() -> list[MachineConfig]:
    return [
        MachineConfig("good-01", "r1", 1, ["52:54:00:aa:00:01"], firmware="uefi"),
        MachineConfig("locked-02", "r1", 3, ["52:54:00:aa:00:02"], faults=["bmc_rejects_credentials"]),
        MachineConfig("dead-03", "r1", 5, ["52:54:00:aa:00:03"], faults=["bmc_dead"]),
        MachineConfig("small-04", "r1", 7, ["52:54:00:aa:00:04"], faults=["disk_too_small"], depth="rear"),
    ]


def target(entry: dict, timeout_s: float = 3.0) -> BmcTarget:
    bmc = entry["bmc"]
    return BmcTarget(bmc["address"], bmc["port"], bmc["username"], bmc["password"], timeout_s=timeout_s)


@pytest.fixture
def lab(tmp_path, stub):
    config = LabConfig(specs(), tmp_path / "lab", base_url=stub.url, install_s=0.2)
    running = Lab(config).start()
    yield running
    running.stop()


def test_inventory_describes_every_machine_and_is_private(lab):
    path = lab.config.inventory_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds BMC passwords
    inventory = json.loads(path.read_text())
    assert inventory["version"] == 1
    assert inventory["site"]["tftp_root"] == str(lab.config.tftp_root)
    assert [m["hostname"] for m in inventory["machines"]] == ["good-01", "locked-02", "dead-03", "small-04"]
    good = inventory["machines"][0]
    assert good["mac"] == "52:54:00:aa:00:01" and good["nics"] == [
        {"name": "eno1", "mac": good["mac"], "pxe": True, "ip": "127.77.1.1", "prefix": 8}
    ]
    assert inventory["machines"][3]["nics"][0]["ip"] == "127.77.1.4"  # one address per machine, by rack
    assert [m["depth"] for m in inventory["machines"]] == ["full", "full", "full", "rear"]
    # What the site's SSH access takes: the jump host (its key pinned) and the login of installed machines.
    jump, login = inventory["jump_host"], inventory["site_login"]
    assert (jump["address"], jump["port"], jump["username"]) == ("127.0.0.1", lab.access.jump.port, "jump")
    assert jump["host_key"].startswith("ssh-ed25519 ") and "PRIVATE KEY" in jump["private_key"]
    assert (login["username"], login["port"]) == ("root", lab.access.ssh_port) and "PRIVATE KEY" in login["private_key"]
    assert good["firmware"] == "uefi" and good["rack"] == "r1" and good["position_u"] == 1
    assert re.fullmatch(r"[0-9a-f]{64}", inventory["image"]["sha256"])
    assert len({m["bmc"]["password"] for m in inventory["machines"]}) == 4
    assert (lab.config.tftp_root / "pxelinux.cfg/default").is_file()
    assert (lab.config.tftp_root / "images/debian-12/linux").is_file()  # the stock profiles' kernels


def test_bmc_faults_show_as_the_driver_errors_a_technician_sees(lab):
    machines = json.loads(lab.config.inventory_path.read_text())["machines"]
    by_name = {m["hostname"]: m for m in machines}
    assert get_driver("ipmi", target(by_name["good-01"])).ping() >= 0
    with pytest.raises(BmcAuthError):
        get_driver("ipmi", target(by_name["locked-02"])).ping()
    with pytest.raises(BmcUnreachable):
        get_driver("ipmi", target(by_name["dead-03"], timeout_s=1.0)).ping()


def test_image_install_with_the_labs_image_and_zipapp_agent(lab, stub):
    inventory = json.loads(lab.config.inventory_path.read_text())
    image = inventory["image"]
    params = {"url": image["url"], "sha256": image["sha256"], "disk": "/dev/sda", "compression": "auto"}
    stub.tasks = [
        {"id": "w", "kind": "write_image", "params": params},
        {"id": "f", "kind": "first_boot_callback", "params": {}},
    ]
    good = lab.machines["good-01"]
    arm(lab.config.tftp_root, "image", stub.url, mac=good.pxe_mac)
    bmc = get_driver("ipmi", target(inventory["machines"][0]))
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()
    good.wait_for("agent-exited", timeout=20)
    assert good.agent_commands[0][1].endswith("provisioner-agent.pyz")
    result = next(json.loads(b) for _, p, _, b in stub.requests if p.endswith("/tasks/w/result"))
    assert result["ok"], result
    assert good.installed_os() == "image"
    # The zipapp's first-boot unit calls back with the callback token its registration answer handed over.
    env = (good.target / "etc/provisioner/first-boot").read_text()
    assert f"PROVISIONER_FIRST_BOOT_URL={stub.url}/i/{CALLBACK_TOKEN}/events/finished" in env


def test_a_disk_too_small_fails_the_agents_write_image(lab, stub):
    inventory = json.loads(lab.config.inventory_path.read_text())
    image = inventory["image"]
    params = {"url": image["url"], "sha256": image["sha256"], "disk": "/dev/sda", "compression": "auto"}
    stub.tasks = [{"id": "w", "kind": "write_image", "params": params}]
    small = lab.machines["small-04"]
    arm(lab.config.tftp_root, "image", stub.url, mac=small.pxe_mac)
    bmc = get_driver("ipmi", target(inventory["machines"][3]))
    bmc.set_boot_device(BootDevice.PXE, once=True)
    bmc.power_on()
    small.wait_for("agent-exited", timeout=20)
    result = next(json.loads(b) for _, p, _, b in stub.requests if p.endswith("/tasks/w/result"))
    assert (result["ok"], result["reason"]) == (False, "ImageTooLarge")


def test_demo_preset_is_three_racks_of_twelve_with_two_faults():
    machines = demo_machines()
    assert len(machines) == 36 and {m.rack for m in machines} == {"r1", "r2", "r3"}
    assert {m.firmware for m in machines} == {"bios", "uefi"}
    assert sum(1 for m in machines if m.faults) == 2


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        MachineConfig("x", "r1", 1, ["52:54:00:00:00:01"], faults=["gremlins"])


def test_the_command_stops_everything_on_sigterm(tmp_path, stub):
    stub.hold_polls = True  # the agent stays up, polling
    config = LabConfig([MachineConfig("solo-01", "r1", 1, ["52:54:00:bb:00:01"])], tmp_path / "lab")
    config_file = tmp_path / "lab.json"
    data = config_as_dict(config)
    config_file.write_text(json.dumps({"machines": data["machines"]}))
    pxe.write_defaults(config.tftp_root)
    arm(config.tftp_root, "image", stub.url, mac="52:54:00:bb:00:01")
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioner.lab", "--config", str(config_file), "--state-dir", str(config.state_dir)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not config.inventory_path.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
            time.sleep(0.05)
        entry = json.loads(config.inventory_path.read_text())["machines"][0]
        bmc = get_driver("ipmi", target(entry))
        bmc.set_boot_device(BootDevice.PXE, once=True)
        bmc.power_on()
        stub.wait_for(lambda s: "/api/agent/v1/register" in s.paths(), timeout=15)
        log = (config.state_dir / "machines" / "solo-01" / "lab.log").read_text()
        agent_pid = int(re.search(r"agent-started: pid (\d+)", log).group(1))
        os.kill(agent_pid, 0)

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "[lab] ready" in output and "[lab] stopped" in output
    assert TOKEN not in output and AGENT_TOKEN not in output
    with pytest.raises(ProcessLookupError):
        os.kill(agent_pid, 0)
    assert not config.inventory_path.exists()


def test_the_demo_has_a_half_depth_pair_for_the_overviews_rear_view():
    assert {m.hostname: m.depth for m in demo_machines() if m.depth != "full"} == {
        "lab-r2-10": "front",
        "lab-r2-11": "rear",
    }
