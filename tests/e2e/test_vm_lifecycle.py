"""A machine's life on a virtual machine, from unknown to released: discovery -> accept -> commission -> hardware
test -> deploy -> release with erase, and an unknown machine at a site without discovery booting its own disk.

The VM is not in inventory: two disks with serials and two NICs on the test's network, only the first of which
network-boots. Its BMC is an ipmi_sim like the other labs', given to the machine once it is accepted. The disks of
the one that is discovered carry markers at their start, middle and end, which the release must erase; those of
the one at a site without discovery carry the e2e installed OS, which it must boot. Every phase is a timeline mark
with its time (var/e2e/<lab>/timeline.log); the last mark sums them up.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import DISK_MARKER, IPMI_PASSWORD, IPMI_USER, PROVISIONING_NETWORKS, SITE, disk_serial
from tests.e2e.watch import Watch

DISCOVERY_BUDGET_S = 240  # power-on to a registration with the full facts (the memory OS boots under TCG)
POWER_OFF_BUDGET_S = 90  # accept to the VM switched off by its agent
OPERATION_BUDGET_S = 330  # one operation (commission, test, deploy, release) from request to its end
DISK_BOOT_BUDGET_S = 150


# The hardware test the lifecycle runs: the stock disk read alone (the stock workflow's CPU burn and memory test
# would take minutes under TCG and prove nothing more about the chain).
TEST_WORKFLOW = """\
name: e2e-disk-test
description: The stock disk read test alone, for the end-to-end lifecycle
method: image
purpose: test
stages:
  - name: prepare
    tasks: [check_bmc, write_boot_config]
  - name: boot the agent
    tasks: [set_boot_pxe, power_cycle, wait_boot]
  - name: tests
    tasks:
      - {task: run_script, name: disk read, params: {script: stock-disk-read, args: ["256"]}}
  - name: finish
    tasks: [remove_boot_config, set_boot_disk, power_off]
"""


def _set_discovery(lab: dict, on: bool) -> None:
    """Switch the site's discovery on or off as a person would (validated, saved), and wait for the site's worker
    to rewrite the TFTP root's default boot configs for it."""
    from inventory.models import Site
    from provisioner.pxe.bootconfig import GRUB_DEFAULT, PXELINUX_DEFAULT

    started = time.monotonic()
    with lab["blocker"].unblock():
        site = Site.objects.get(slug=SITE)
        site.discovery = on
        site.provisioning_networks = PROVISIONING_NETWORKS
        site.full_clean()
        site.save()
    defaults = [lab["tftp_root"] / PXELINUX_DEFAULT, lab["tftp_root"] / GRUB_DEFAULT]
    while any(("provisioner.mode=discover" in path.read_text()) != on for path in defaults):
        if time.monotonic() - started > 30:
            pytest.fail(f"the TFTP defaults do not {'discover' if on else 'boot the disk'} 30 s after the switch")
        time.sleep(0.5)
    lab["timeline"].mark(
        f"site discovery {'on' if on else 'off'}",
        f"provisioning networks {PROVISIONING_NETWORKS}; TFTP defaults rewritten in {time.monotonic() - started:.1f} s",
    )


def _network_boot(lab: dict) -> None:
    """Power the VM on over its BMC with a one-time network boot, as a technician racking it would."""
    from provisioner.bmc.base import BootDevice

    bmc = lab["machine"].bmc()
    bmc.set_boot_device(BootDevice.PXE, once=True, uefi=lab["firmware"] == "uefi")
    bmc.power_on()
    lab["timeline"].mark("power on over the BMC, network boot first")


def _wait_off(lab: dict, watch: Watch, budget_s: float, what: str) -> float:
    started = time.monotonic()
    while lab["machine"].qemu_pid() is not None:
        watch.poll()
        if time.monotonic() - started > budget_s:
            pytest.fail(f"the VM still runs {budget_s} s after {what}; see {lab['run']}")
        time.sleep(0.5)
    watch.poll()
    return time.monotonic() - started


def _discovered(lab: dict, watch: Watch, macs: set[str]):
    """The DiscoveredMachine of the VM's boot MAC once its facts name every NIC and every disk."""
    from inventory.models import DiscoveredMachine

    deadline = time.monotonic() + DISCOVERY_BUDGET_S
    seen = None
    while True:
        watch.poll()
        with lab["blocker"].unblock():
            row = DiscoveredMachine.objects.filter(mac=lab["mac"]).first()
        if row is not None and seen is None:
            seen = row
            lab["timeline"].mark("discovered", f"id {row.id} from {row.address}, state {row.state}")
        if row is not None:
            facts = row.facts or {}
            found = {nic.get("mac") for nic in facts.get("nics", [])}
            if found >= macs and len(facts.get("disks", [])) == len(lab["spec"].disks):
                return row
        if time.monotonic() > deadline:
            pytest.fail(
                f"no registration with full facts after {DISCOVERY_BUDGET_S} s (row: {row and row.facts}); "
                f"last phases: {lab['timeline'].seen[-8:]}; see {lab['run']}"
            )
        time.sleep(1)


def _serials(disks: list[dict]) -> list[str]:
    # libata reports the ATA serial (space-padded; the agent strips it) as the disk's VPD unit serial.
    return sorted(str(d.get("serial")) for d in disks)


def _operation(lab: dict, watch: Watch, hostname: str, what: str, argv: list[str]):
    """Request operation `what` on the command line, follow its install to the end; the install and its
    seconds from the request to succeeded."""
    from installs.models import Install, InstallState

    with lab["blocker"].unblock():
        before = set(Install.objects.filter(machine__hostname=hostname).values_list("pk", flat=True))
    started = time.monotonic()
    out = lab["services"].manage(*argv)
    lab["timeline"].mark(f"{what} requested", out.strip()[:160])
    with lab["blocker"].unblock():
        install = (
            Install.objects.select_related("machine__rack__site")
            .filter(machine__hostname=hostname)
            .exclude(pk__in=before)
            .get()
        )
    if install.purpose == "deploy":
        from installs.tokens import callback_token

        base_url = install.machine.rack.site.base_url
        lab["images"].callbacks[lab["mac"]] = f"{base_url}/i/{callback_token(install.token_nonce)}/events/finished"
    state = watch.follow_install(install, OPERATION_BUDGET_S)
    elapsed = time.monotonic() - started
    assert state == InstallState.SUCCEEDED, f"{what}: {install.failure_reason}: {install.failure_message}"
    assert install.purpose == what, f"the {what} request made an install for {install.purpose}"
    lab["timeline"].mark(f"{what} took", f"{elapsed:.1f} s from request to succeeded")
    return install, elapsed


def _discovery_audit(lab: dict, macs: set[str], after: int) -> list[tuple[str, str]]:
    """Audit entries past `after` about discovery, or that name one of `macs` anywhere in their details."""
    from django.db.models import Q, TextField
    from django.db.models.functions import Cast

    from audit.models import AuditEntry

    mentions = Q()
    for mac in macs:
        mentions |= Q(details_text__icontains=mac) | Q(object_label__icontains=mac)
    with lab["blocker"].unblock():
        return list(
            AuditEntry.objects.filter(pk__gt=after)
            .annotate(details_text=Cast("details", TextField()))
            .filter(Q(action__icontains="discover") | Q(object_type__icontains="discover") | mentions)
            .order_by("pk")
            .values_list("action", "object_label")
        )


def _last_audit(lab: dict) -> int:
    from audit.models import AuditEntry

    with lab["blocker"].unblock():
        return AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _machine_page(lab: dict, hostname: str) -> str:
    """The machine's page as a signed-in technician sees it (rendered in this process, on the e2e database)."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    with lab["blocker"].unblock():
        user, _ = get_user_model().objects.get_or_create(
            username="e2e-technician", defaults={"is_staff": True, "is_superuser": True}
        )
        client = Client()
        client.force_login(user)
        response = client.get(reverse("inventory:machine-detail", args=[hostname]))
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _status(lab: dict, hostname: str) -> str:
    from inventory.models import Machine

    with lab["blocker"].unblock():
        return Machine.objects.get(hostname=hostname).status


@pytest.mark.slow
@pytest.mark.parametrize("lab", ["unknown-discovery"], indirect=True)
def test_unknown_machine_discovered_commissioned_tested_deployed_released(lab):
    from inventory.models import BMC, NIC, DiscoveredMachine, Machine, MachineFacts, MachineStatus

    timeline = lab["timeline"]
    spec = lab["spec"]
    machine = lab["machine"]
    hostname = spec.hostname
    macs = {spec.mac, *spec.extra_macs}
    serials = [disk_serial(name) for name in spec.disks]
    watch = Watch(lab)
    timings: dict[str, float] = {}

    for name in spec.disks:  # what the erase at the end must remove
        assert set(machine.read_regions(name).values()) == {DISK_MARKER}, f"disk {name} was not preloaded"
    _set_discovery(lab, True)
    last_audit = _last_audit(lab)
    started = time.monotonic()
    _network_boot(lab)
    row = _discovered(lab, watch, macs)
    timings["discovery"] = time.monotonic() - started
    timeline.mark("registered with full facts", f"{timings['discovery']:.1f} s from power on")
    assert row.state == "waiting"
    assert row.address == "127.0.0.1", f"the control plane saw the VM as {row.address}"
    assert _serials(row.facts["disks"]) == serials, row.facts["disks"]
    assert "provisioner.mode=discover" in watch.serial.text(), "the memory OS was not booted in discovery mode"
    with lab["blocker"].unblock():
        assert not Machine.objects.filter(hostname=hostname).exists()
    # What the discovery-off test looks for, so that its finding nothing means something.
    audited = [action for action, _ in _discovery_audit(lab, macs, last_audit)]
    assert "discovery.registered" in audited, audited

    started = time.monotonic()
    out = lab["services"].manage(
        "discovered", "accept", str(row.id), "--hostname", hostname, "--rack", f"{SITE}/vm",
        "--position", str(spec.position_u),
    )  # fmt: skip
    timeline.mark("accepted", out.strip()[:160])
    off_s = _wait_off(lab, watch, POWER_OFF_BUDGET_S, "the accept")
    timings["accept to off"] = time.monotonic() - started
    timeline.mark("switched off by its agent", f"{off_s:.1f} s after the accept")
    with lab["blocker"].unblock():
        row.refresh_from_db()
        assert row.state == "accepted", row.state
        accepted = Machine.objects.select_related("rack__site").get(hostname=hostname)
        assert row.machine_id == accepted.pk
        assert (accepted.rack.site.slug, accepted.rack.name, accepted.position_u) == (SITE, "vm", spec.position_u)
        assert accepted.status == MachineStatus.NEW, accepted.status
        assert set(NIC.objects.filter(machine=accepted).values_list("mac", flat=True)) == macs
        assert NIC.objects.get(machine=accepted, is_pxe=True).mac == spec.mac
        # The technician types the BMC's address and credentials (or a site default covers them).
        bmc = BMC.objects.filter(machine=accepted).first() or BMC(machine=accepted)
        bmc.driver, bmc.address, bmc.port, bmc.username = "ipmi", "127.0.0.1", machine.port, IPMI_USER
        bmc.set_password(IPMI_PASSWORD)
        bmc.full_clean()
        bmc.save()
    timeline.mark("BMC credentials given", f"ipmi 127.0.0.1:{machine.port}")

    _, timings["commission"] = _operation(lab, watch, hostname, "commission", ["machine", hostname, "commission"])
    with lab["blocker"].unblock():
        commissioned = Machine.objects.get(hostname=hostname)
        versions = list(MachineFacts.objects.filter(machine=commissioned).order_by("version"))
        nics = {nic.mac: nic for nic in NIC.objects.filter(machine=commissioned)}
    assert commissioned.status == MachineStatus.READY, commissioned.status
    assert [v.version for v in versions] == [1], [v.version for v in versions]
    assert _serials(versions[0].facts["disks"]) == serials, versions[0].facts["disks"]
    assert set(nics) == macs, sorted(nics)
    assert all(nic.lldp_seen is False for nic in nics.values()), {m: n.lldp_seen for m, n in nics.items()}
    assert commissioned.disk_count == 2, commissioned.disk_count
    page = _machine_page(lab, hostname)
    for mac in sorted(macs):
        cells = re.search(rf"<code>{mac}</code>.*?</tr>", page, re.S)
        assert cells and "no LLDP neighbour heard" in cells[0], f"the page does not say NIC {mac} heard no switch"
    timeline.mark("commissioned", f"facts v1: disks {serials}, NICs {sorted(nics)}, no LLDP on either")

    with lab["blocker"].unblock():
        from audit.service import Actor
        from installs import library

        library.save_workflow(TEST_WORKFLOW, Actor.system("e2e"))
    test, timings["test"] = _operation(
        lab, watch, hostname, "test", ["machine", hostname, "test", "--workflow", "e2e-disk-test"]
    )
    with lab["blocker"].unblock():
        from installs.models import EventKind

        log = "\n".join(test.events.filter(kind=EventKind.LOG).values_list("message", flat=True))
    assert "2 disk(s) read without error" in log, f"the disk read test did not read both disks:\n{log}"
    assert _status(lab, hostname) == MachineStatus.READY

    from provisioner.memory_os.build import PROFILE

    since = len(watch.serial.text())
    _, timings["deploy"] = _operation(lab, watch, hostname, "deploy", ["install", hostname, "--profile", PROFILE])
    assert _status(lab, hostname) == MachineStatus.DEPLOYED
    text = watch.serial.text()[since:]
    assert "installed-os: first-boot callback sent" in text, "the deployed OS did not call back"
    assert re.search(rf"installed-os: root /dev/\S+, hostname {hostname}\b", text), "set_hostname did not land"

    _, timings["release"] = _operation(lab, watch, hostname, "release", ["machine", hostname, "release", "--yes"])
    assert _status(lab, hostname) == MachineStatus.READY
    off_s = _wait_off(lab, watch, POWER_OFF_BUDGET_S, "the release")
    timeline.mark("released machine is off", f"{off_s:.1f} s after the release ended")
    for name in spec.disks:
        regions = machine.read_regions(name)
        dirty = [where for where, data in regions.items() if data.strip(b"\0")]
        assert not dirty, f"disk {name} ({disk_serial(name)}) is not erased at its {', '.join(dirty)}"
    timeline.mark("disks erased", f"start, middle and end of {', '.join(spec.disks)} read back as zeros")

    with lab["blocker"].unblock():
        assert DiscoveredMachine.objects.filter(mac__in=macs).count() == 1
    total = sum(timings.values())
    timeline.mark("timings", "; ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + f"; total {total:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("lab", ["unknown-no-discovery"], indirect=True)
def test_unknown_machine_boots_its_disk_without_discovery(lab):
    from inventory.models import DiscoveredMachine

    timeline = lab["timeline"]
    spec = lab["spec"]
    macs = {spec.mac, *spec.extra_macs}
    watch = Watch(lab)

    _set_discovery(lab, False)
    last_audit = _last_audit(lab)
    started = time.monotonic()
    _network_boot(lab)
    since = 0
    if lab["firmware"] == "uefi":
        since, _ = watch.wait_for("Booting `Boot local disk'", since, DISK_BOOT_BUDGET_S)
        timeline.mark("GRUB's default config chose the local disk")
    since, _ = watch.wait_for("installed-os: booted from the disk", since, DISK_BOOT_BUDGET_S)
    # The OS that was on its disks when it arrived (its network config names no MAC of this machine, which it
    # then reports: not this test's concern).
    since, line = watch.wait_for("installed-os: root /dev/", since, DISK_BOOT_BUDGET_S)
    boot_s = time.monotonic() - started
    timeline.mark("unknown machine booted its own disk", f"{boot_s:.1f} s from power on: {line}")
    events = (lab["machine"].state / "events.log").read_text()
    assert "power-on boot=network" in events, f"it did not network-boot first: {events}"

    with lab["blocker"].unblock():
        rows = list(DiscoveredMachine.objects.filter(mac__in=macs))
    audited = _discovery_audit(lab, macs, last_audit)
    assert not rows, f"a machine was discovered at a site without discovery: {rows}"
    assert not audited, f"discovery audited at a site without it: {audited}"
    timeline.mark("timings", f"disk boot {boot_s:.1f} s")
