"""Commission, test and release as installs run by the real engine on PostgreSQL, Redis and RQ, the agent's side
played through the same service calls its HTTP API makes: the lifecycle each moves the machine through, the
facts versions commissioning stores, the in-band BMC user, a failed hardware test marking the machine broken, the
erase report, and every refusal in words."""

import json

import pytest

from audit.models import AuditEntry
from audit.service import Actor
from installs import callbacks, operations
from installs.batches import InstallRefused
from installs.models import Alert, Event, EventKind, InstallState, StepState
from inventory import lifecycle
from inventory.models import MachineFacts, MachineStatus
from inventory.services import set_protected

ADMIN = Actor.system("admin")


def full_facts(machine, *, serials=("S-A1", "S-B2"), memory_gib=64, lldp=None) -> dict:
    """What the agent's commission task reports (provisioner/agent/facts.py collect_full), for this machine."""
    return {
        "cpus": 32,
        "memory_bytes": memory_gib * 2**30 * 98 // 100,  # MemTotal: less than the modules hold
        "cpu": {"model": "AMD EPYC 7313P", "sockets": 1, "cores": 16, "threads": 32, "mhz": 3000.0},
        "memory_modules": [
            {"slot": f"DIMM{i}", "size_bytes": memory_gib // 4 * 2**30, "speed_mts": 3200, "type": "DDR4",
             "manufacturer": "Samsung", "serial": f"M{i}", "part_number": "M393A2K43DB3"}
            for i in range(4)
        ],
        "disks": [
            {"name": "sda", "path": "/dev/sda", "size_bytes": 480 * 10**9, "model": "SSD", "serial": serials[0],
             "wwn": "0x5000c500a1", "rotational": False, "transport": "sata",
             "smart": {"available": True, "passed": True, "detail": "PASSED"}},
            {"name": "sdb", "path": "/dev/sdb", "size_bytes": 4 * 10**12, "model": "HDD", "serial": serials[1],
             "wwn": "0x5000c500b2", "rotational": True, "transport": "sata",
             "smart": {"available": True, "passed": True, "detail": "PASSED"}},
        ],
        "nics": [
            {"name": "eno1", "mac": machine.pxe_nic.mac, "link": True, "speed_mbps": 25000, "driver": "mlx5_core",
             "firmware": "22.31.1014", "lldp": lldp},
        ],
        "pci": [{"address": "0000:41:00.0", "class": "0200", "vendor_id": "15b3", "device_id": "1017",
                 "vendor": "Mellanox", "device": "MT27800", "driver": "mlx5_core"}],
        "firmware": {"bios_vendor": "AMI", "bios_version": "2.4", "bios_date": "01/02/2024", "board_vendor": "ASRock",
                     "board_name": "ROMED8", "board_serial": "BRD1", "chassis_serial": "CH1"},
        "bmc": {"address": "10.0.0.50", "mac": "aa:bb:cc:00:00:50", "source": "ipmitool lan print"},
        "dmi": {"vendor": "ASRockRack", "product": "1U2LW-X570", "serial": "SRV-0001"},
        "efi": True,
        "lldp_listened_s": 30,
        "notes": [],
    }  # fmt: skip


@pytest.fixture
def site(lab):
    lab.site.memory_os = lab.image_profile()
    lab.site.save()
    return lab.site


def start(lab, machine, action: str, **kw):
    """Request ``action`` on the machine, boot it, and register its agent: the install waits for the agent."""
    install = operations.request([machine.pk], action, ADMIN, **kw).installs.get()
    lab.run_jobs()
    callbacks.agent_register(install.pk, full_facts(machine))
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.INSTALLING, install.failure_message
    return install


def next_task(install):
    return callbacks.agent_next_task(install.pk)["task"]


def report(lab, install, task, output="", ok=True, reason="", message=""):
    outcome = callbacks.agent_result(install.pk, task["id"], ok, reason, message, output)
    lab.run_jobs()
    return outcome


def drain(lab, install):
    """Answer every other task the agent is handed, successfully, and let the worker finish."""
    while task := next_task(install):
        report(lab, install, task)
    lab.run_jobs()
    install.refresh_from_db()


def lifecycle_moves(machine) -> list[tuple[str, str]]:
    entries = AuditEntry.objects.filter(action="machine.lifecycle", object_id=str(machine.pk)).order_by("pk")
    return [(e.details["from"], e.details["to"]) for e in entries]


def test_commissioning_stores_versioned_facts_fills_the_machine_and_makes_it_ready(lab, site):
    machine = lab.machine()
    assert machine.status == MachineStatus.NEW
    install = start(lab, machine, "commission")
    machine.refresh_from_db()
    assert machine.status == MachineStatus.COMMISSIONING and install.purpose == "commission"
    task = next_task(install)
    assert task["kind"] == "commission" and task["params"] == {"lldp_s": 30}
    assert report(lab, install, task, json.dumps(full_facts(machine))) == "ok"
    drain(lab, install)  # create_bmc_user is skipped: this site does not ask for it
    assert install.state == InstallState.SUCCEEDED, install.failure_message
    assert install.steps.get(task="create_bmc_user").state == StepState.SKIPPED
    assert install.steps.filter(kind="power_off", state=StepState.SUCCEEDED).exists()
    assert lab.per_mac_files(machine) == []

    machine.refresh_from_db()
    assert machine.status == MachineStatus.READY
    assert (machine.serial, machine.vendor, machine.model) == ("SRV-0001", "ASRockRack", "1U2LW-X570")
    assert (machine.cpu_model, machine.cpu_cores, machine.memory_bytes) == ("AMD EPYC 7313P", 16, 64 * 2**30)
    assert (machine.disk_count, machine.ssd_count, machine.hdd_count, machine.nvme_count) == (2, 1, 1, 0)
    assert machine.nic_max_speed_mbps == 25000
    nic = machine.pxe_nic
    assert (nic.driver, nic.firmware, nic.speed_mbps, nic.lldp_seen, nic.switch_name) == (
        "mlx5_core", "22.31.1014", 25000, False, "")  # fmt: skip
    first = MachineFacts.objects.get(machine=machine)
    assert first.version == 1 and first.changes == [] and first.source == f"commissioning (install {install.pk})"
    log = Event.objects.get(install=install, kind=EventKind.LOG, step__task="commission").message
    assert log.startswith("Hardware facts version 1 stored (first): AMD EPYC 7313P 16 cores, 64 GiB, 2 disk(s)")
    assert "no LLDP neighbour heard" in log
    assert lifecycle_moves(machine) == [("new", "commissioning"), ("commissioning", "ready")]

    # Again, after a disk was swapped and the NIC was cabled to a switch that speaks LLDP.
    again = start(lab, machine, "commission")
    lldp = {"chassis_id": "00:11:22:33:44:55", "system_name": "leaf-r01", "port_id": "Ethernet12",
            "port_description": "r01-u01"}  # fmt: skip
    report(lab, again, next_task(again), json.dumps(full_facts(machine, serials=("S-A1", "S-C3"), lldp=lldp)))
    drain(lab, again)
    second = MachineFacts.objects.get(machine=machine, version=2)
    paths = {change["path"] for change in second.changes}
    assert "disks[S-B2].serial" in paths and "disks[S-C3].serial" in paths
    lldp_path = f"nics[{machine.pxe_nic.mac}].lldp.system_name"
    assert {"path": lldp_path, "before": None, "after": "leaf-r01"} in second.changes
    nic = machine.pxe_nic
    nic.refresh_from_db()
    assert (nic.switch_name, nic.switch_port, nic.lldp_seen) == ("leaf-r01", "Ethernet12", True)


def test_commissioning_creates_the_bmc_user_in_band_and_no_step_or_log_keeps_its_password(lab, site):
    site.create_bmc_user = True
    site.save()
    machine = lab.machine()
    install = start(lab, machine, "commission")
    report(lab, install, next_task(install), json.dumps(full_facts(machine)))
    task = next_task(install)
    assert task["kind"] == "create_bmc_user" and task["params"]["username"] == "provisioner"
    password = task["params"]["password"]
    assert len(password) == 20 and password.isalnum()
    step = install.steps.get(task="create_bmc_user")
    assert "password" not in step.params
    assert next_task(install)["params"]["password"] == password  # handed out again: the same one
    report(lab, install, task, json.dumps({"user_id": 3, "channel": 1, "address": "10.0.0.50", "mac": "aa:bb"}))
    drain(lab, install)
    assert install.state == InstallState.SUCCEEDED, install.failure_message
    bmc = machine.bmc
    bmc.refresh_from_db()
    assert (bmc.username, bmc.get_password(), bmc.has_new_user_password) == ("provisioner", password, False)
    for text in (
        json.dumps(list(AuditEntry.objects.values_list("details", flat=True))),
        json.dumps(list(Event.objects.filter(install=install).values_list("message", "data"))),
        json.dumps(list(install.steps.values_list("params", "result", "message"))),
    ):
        assert password not in text
    assert AuditEntry.objects.get(action="bmc.user_created").details == {
        "username": "provisioner", "user_id": 3, "channel": 1}  # fmt: skip


def test_a_failed_hardware_test_marks_the_machine_broken_with_the_test_and_raises_an_alert(lab, site):
    machine = lab.machine(status=MachineStatus.READY)
    install = start(lab, machine, "test", options={"cpu_burn_s": 5, "nic_speed_mbps": 10000})
    handed = {}
    while task := next_task(install):
        handed[task["params"]["name"]] = task["params"].get("args")
        failing = task["params"]["name"].startswith("stock-disk-read")
        report(lab, install, task, "read error on /dev/sdb at 12 MiB", ok=not failing,
               reason="ScriptFailed" if failing else "", message="exit status 1" if failing else "")  # fmt: skip
    lab.run_jobs()
    assert handed == {
        "stock-smart-selftest@0": None,
        "stock-disk-read@0": ["256"],
        "stock-memory-test@0": ["256"],
        "stock-cpu-burn@0": ["5"],
        "stock-nic-speed@0": ["10000"],
    }
    install.refresh_from_db()
    assert install.state == InstallState.SUCCEEDED  # every test ran; the workflow goes on past a failure
    machine.refresh_from_db()
    assert machine.status == MachineStatus.BROKEN
    assert machine.status_reason == f"Hardware test failed (install {install.pk} of {machine.hostname}): disk read."
    alert = Alert.objects.get(machine=machine, reason="HardwareTestFailed")
    assert "disk read" in alert.message
    assert [a.name for a in lifecycle.actions_for(machine)] == [
        "commission", "test", "mark-fixed", "enter-maintenance"]  # fmt: skip


def test_tests_that_all_pass_leave_the_machine_ready(lab, site):
    machine = lab.machine(status=MachineStatus.READY)
    install = start(lab, machine, "test")
    drain(lab, install)
    assert install.state == InstallState.SUCCEEDED
    machine.refresh_from_db()
    assert machine.status == MachineStatus.READY and not Alert.objects.filter(machine=machine).exists()


def test_release_erases_every_disk_and_reports_the_method_of_each(lab, site):
    machine = lab.machine(status=MachineStatus.DEPLOYED)
    install = start(lab, machine, "release")
    task = next_task(install)
    assert task["kind"] == "erase_disks"
    assert task["params"] == {"disks": ["/dev/sda", "/dev/sdb"], "method": "auto", "verify": True}
    erased = [
        {"path": "/dev/sda", "serial": "S-A1", "method": "secure", "fallback": "", "verified": True, "seconds": 2.5},
        {"path": "/dev/sdb", "serial": "S-B2", "method": "zero", "fallback": "ATA security frozen",
         "verified": True, "seconds": 812.0},
    ]  # fmt: skip
    report(lab, install, task, json.dumps({"disks": erased}))
    drain(lab, install)
    assert install.state == InstallState.SUCCEEDED, install.failure_message
    machine.refresh_from_db()
    assert machine.status == MachineStatus.READY
    log = Event.objects.get(install=install, kind=EventKind.LOG, step__task="erase_disks").message
    assert log == (
        "Erased: /dev/sda (serial S-A1): secure, verified, 2.5 s; "
        "/dev/sdb (serial S-B2): zero (not ATA security frozen), verified, 812.0 s"
    )
    assert lifecycle_moves(machine) == [("deployed", "releasing"), ("releasing", "ready")]


def test_a_failed_erase_leaves_the_machine_failed_with_the_reason(lab, site):
    machine = lab.machine(status=MachineStatus.DEPLOYED)
    install = start(lab, machine, "release")
    report(lab, install, next_task(install), ok=False, reason="EraseUnverified",
           message="/dev/sdb still reads non-zero at offset 2199023255552")  # fmt: skip
    install.refresh_from_db()
    machine.refresh_from_db()
    assert install.state == InstallState.FAILED
    assert machine.status == MachineStatus.FAILED and "still reads non-zero" in machine.status_reason


def test_refusals_say_where_the_machine_is_and_what_it_can_do(lab, site):
    new = lab.machine()
    with pytest.raises(InstallRefused) as refused:
        operations.request([new.pk], "release", ADMIN)
    assert refused.value.args[0] == [
        f"{new.hostname} is new: release is not possible from there. It can: commission, deploy, mark-broken, "
        "enter-maintenance."
    ]
    with pytest.raises(InstallRefused) as refused:
        operations.request([new.pk], "test", ADMIN, options={"cpu_burn_s": "soon"})
    assert refused.value.args[0] == ["cpu_burn_s: 'soon' is not a whole number."]
    with pytest.raises(InstallRefused) as refused:
        operations.request([new.pk], "scrub", ADMIN)
    assert "“scrub” is not an operation" in refused.value.args[0][0]

    deployed = lab.machine(status=MachineStatus.DEPLOYED)
    set_protected(deployed.pk, True, actor=ADMIN, reason="production")
    with pytest.raises(InstallRefused) as refused:
        operations.request([deployed.pk], "release", ADMIN)
    assert refused.value.args[0] == [
        f"Protected, release (it erases every disk) refused: {deployed.hostname}. "
        "Unprotect with a reason first if this is intended."
    ]
    assert AuditEntry.objects.filter(action="install.refused", details__purpose="release").count() == 2

    site.memory_os = None
    site.save()
    with pytest.raises(InstallRefused) as refused:
        operations.request([new.pk], "commission", ADMIN)
    assert refused.value.args[0] == [
        f"{new.hostname}: site lab has no memory OS profile, which a commission boots; choose one in the site's "
        "settings."
    ]
    new.refresh_from_db()
    assert new.status == MachineStatus.NEW and not new.installs.exists()


def test_a_cancel_before_the_machine_was_touched_puts_it_back_where_it_was(lab, site):
    from installs.engine import cancel

    machine = lab.machine(status=MachineStatus.BROKEN)
    install = operations.request([machine.pk], "commission", ADMIN).installs.get()
    machine.refresh_from_db()
    assert machine.status == MachineStatus.COMMISSIONING
    cancel(install.pk, actor=ADMIN, why="wrong machine")
    machine.refresh_from_db()
    assert machine.status == MachineStatus.BROKEN


def test_marks_need_a_reason_and_follow_the_table(lab, site):
    machine = lab.machine(status=MachineStatus.READY)
    with pytest.raises(lifecycle.LifecycleRefused, match="needs a reason"):
        lifecycle.mark(machine, "mark-broken", ADMIN, "  ")
    lifecycle.mark(machine, "mark-broken", ADMIN, "PSU 2 failed")
    machine.refresh_from_db()
    assert (machine.status, machine.status_reason) == (MachineStatus.BROKEN, "PSU 2 failed")
    with pytest.raises(lifecycle.LifecycleRefused, match="exit maintenance is not possible"):
        lifecycle.mark(machine, "exit-maintenance", ADMIN)
    lifecycle.mark(machine, "mark-fixed", ADMIN, "PSU replaced")
    machine.refresh_from_db()
    assert (machine.status, machine.status_reason) == (MachineStatus.READY, "")
    entry = AuditEntry.objects.filter(action="machine.lifecycle").latest("pk")
    assert entry.details == {"from": "broken", "to": "ready", "reason": "PSU replaced"}
