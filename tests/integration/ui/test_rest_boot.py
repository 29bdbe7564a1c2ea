"""POST machines/{hostname}/boot over live HTTP: queued on the site's worker, which points the boot device of a real
IPMI BMC (OpenIPMI's ipmi_sim) as asked; a protected machine refuses a network boot and queues nothing."""

from __future__ import annotations

import shutil

import pytest

from audit.models import AuditEntry
from core import queues
from inventory.models import BMC, Machine
from tests.integration.bmc.conftest import IPMI_PASSWORD, IPMI_USER, IpmiSim
from tests.integration.installs.conftest import BurstWorker
from tests.integration.ui.test_rest_inventory import Api

pytestmark = pytest.mark.skipif(shutil.which("ipmi_sim") is None, reason="OpenIPMI's ipmi_sim is not installed")


@pytest.fixture
def sim(tmp_path):
    sim = IpmiSim(tmp_path / "sim").start()
    yield sim
    sim.kill()


@pytest.fixture
def machine(scene, sim):
    BMC.objects.filter(machine=scene.idle).delete()
    bmc = BMC(machine=scene.idle, driver="ipmi", address="127.0.0.1", port=sim.port, username=IPMI_USER)
    bmc.set_password(IPMI_PASSWORD)
    bmc.save()
    return scene.idle


def run_site_jobs(site) -> int:
    queue = queues.site_queue(site.slug)
    pending = queue.count
    BurstWorker([queue], connection=queues.connection()).work(burst=True)
    return pending


def test_a_technician_points_the_boot_at_the_network_and_the_bmc_does_it(scene, machine, sim, live_server):
    technician = Api(live_server.url, "technician")
    answer = technician("POST", f"machines/{machine.hostname}/boot", {"device": "pxe"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["device"] == "pxe" and answer.json()["persistent"] is False
    assert IPMI_PASSWORD not in str(queues.site_queue(scene.site.slug).fetch_job(answer.json()["job"]).args)
    assert run_site_jobs(scene.site) >= 1
    assert sim.boot == "pxe"
    entry = AuditEntry.objects.filter(action="machine.boot", object_label=machine.hostname).latest("pk")
    assert entry.details == {"ok": True, "device": "pxe", "persistent": False}
    assert entry.actor_label == "technician-api"
    assert technician("POST", f"machines/{machine.hostname}/boot", {"device": "disk", "persistent": True}).ok
    run_site_jobs(scene.site)
    assert sim.boot == "default"


def test_a_protected_machine_refuses_a_network_boot_and_queues_nothing(scene, machine, sim, live_server):
    Machine.objects.filter(pk=machine.pk).update(protected=True)
    technician = Api(live_server.url, "technician")
    refused = technician("POST", f"machines/{machine.hostname}/boot", {"device": "pxe"})
    assert refused.status_code == 409 and "Protected, network boot refused" in refused.json()["problems"][0]
    assert queues.site_queue(scene.site.slug).count == 0 and sim.boot != "pxe"
    entry = AuditEntry.objects.filter(action="machine.boot", object_label=machine.hostname).latest("pk")
    assert entry.details["refused"] == "protected"
    assert technician("POST", f"machines/{machine.hostname}/boot", {"device": "disk"}).status_code == 202
    viewer = Api(live_server.url, "viewer")
    assert viewer("POST", f"machines/{machine.hostname}/boot", {"device": "disk"}).status_code == 403
    bad = technician("POST", f"machines/{machine.hostname}/boot", {"device": "floppy"})
    assert bad.status_code == 400 and bad.json()["field"] == "device"
