"""A third-party out-of-band driver, built as a wheel here and installed with pip into a directory of its own,
shows up through its entry point alone: in the admin's choices with its capabilities, in the API, the pages
and the command line, with no migration; what it does not declare is refused in words before any call."""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.api_tokens import create_token
from audit.models import AuditEntry
from audit.service import Actor
from installs.batches import InstallRefused, request_installs
from inventory import power
from inventory.models import OSProfile
from inventory.stock import sync_stock_profiles
from provisioner.bmc import CapabilityMissing, registry
from tests import redis_claim
from tests.conftest import make_bmc, make_machine
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db

PACKAGE = {
    "acme_bmc/__init__.py": """
from provisioner.bmc.registry import Capability, DriverInfo

DRIVER = DriverInfo(
    name="acme",
    label="ACME Lights-Out",
    factory="acme_bmc.driver:AcmeDriver",
    capabilities={Capability.POWER},
    default_port=8443,
    description="ACME's own HTTP BMC.",
)
""",
    "acme_bmc/driver.py": """
from provisioner.bmc import PowerState

CHASSIS = {}  # endpoint -> power state, so the test can look


class AcmeDriver:
    def __init__(self, target):
        self.target = target

    def power_state(self):
        return CHASSIS.get(self.target.endpoint, PowerState.OFF)

    def power_on(self):
        CHASSIS[self.target.endpoint] = PowerState.ON

    def power_off(self, soft=False):
        CHASSIS[self.target.endpoint] = PowerState.OFF

    def power_cycle(self):
        CHASSIS[self.target.endpoint] = PowerState.ON

    def set_boot_device(self, device, once=True, uefi=None):
        raise AssertionError("never called: the driver does not declare boot_device")

    def get_boot_device(self):
        raise AssertionError("never called")

    def ping(self):
        return 0.001
""",
}
ENTRY_POINTS = "[provisioner.drivers]\nacme = acme_bmc:DRIVER\nbroken = acme_bmc.missing:DRIVER\n"


def _wheel(directory: Path) -> Path:
    """acme_bmc-1.0-py3-none-any.whl, written the way any build backend writes one."""
    dist_info = "acme_bmc-1.0.dist-info"
    files = dict(PACKAGE)
    files[f"{dist_info}/METADATA"] = "Metadata-Version: 2.1\nName: acme-bmc\nVersion: 1.0\n"
    files[f"{dist_info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist_info}/entry_points.txt"] = ENTRY_POINTS
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    path = directory / "acme_bmc-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


@pytest.fixture
def acme(tmp_path, settings):
    """The package installed by pip into a directory on sys.path, as a site would install it."""
    settings.BMC_MIN_INTERVAL_S = 0.01
    redis_claim.flush()
    target = tmp_path / "site-packages"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target),
         str(_wheel(tmp_path))],
        check=True,
    )  # fmt: skip
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    registry.reload()
    yield registry.drivers()["acme"]
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m == "acme_bmc" or m.startswith("acme_bmc.")]:
        del sys.modules[name]
    registry.reload()
    redis_claim.flush()


def _acme_machine(**kw):
    sync_stock_profiles()
    machine = make_machine(**kw)
    make_bmc(machine, driver="acme", address="127.0.0.1", port=8443)
    machine.refresh_from_db()
    return machine


def test_the_plugin_is_registered_with_its_capabilities_and_a_broken_one_is_reported(acme):
    assert acme.origin == "acme-bmc" and acme.capabilities == {registry.Capability.POWER}
    assert ("acme", "ACME Lights-Out") in registry.choices()
    assert {"ipmi", "redfish", "fake"} <= set(registry.drivers())  # a broken plug-in takes nothing down
    assert any(e.startswith("broken (acme-bmc):") and "acme_bmc.missing" in e for e in registry.load_errors)


def test_the_admin_offers_the_plugin_with_what_it_can_do_and_needs_no_migration(acme, admin_client):
    machine = _acme_machine()
    html = admin_client.get(f"/admin/inventory/machine/{machine.pk}/change/").content.decode()
    assert '<option value="acme" selected>ACME Lights-Out</option>' in html
    assert "ACME Lights-Out: power on, off, cycle and status (plug-in from acme-bmc)" in html
    assert "Redfish: power on, off, cycle and status, boot from network or disk" in html
    machine.bmc.full_clean()  # the stored name is a valid choice
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # exits non-zero on any change


def test_power_goes_through_the_plugin_and_what_it_lacks_is_refused_before_any_call(acme):
    from acme_bmc.driver import CHASSIS

    machine = _acme_machine()
    actor = Actor.system("test")
    assert power.perform(machine, "on", actor) == f"{machine.hostname}: powered on"
    assert CHASSIS["127.0.0.1:8443"] == "on"
    with pytest.raises(power.PowerActionRefused) as refused:
        power.perform(machine, "pxe", actor)
    assert str(refused.value) == f"{machine.hostname}: the ACME Lights-Out driver cannot do boot from network or disk."
    entry = AuditEntry.objects.filter(action="machine.pxe").latest("pk")
    assert entry.details == {"ok": False, "refused": "capability"}
    with pytest.raises(power.PowerActionRefused, match="cannot do boot from network or disk"):
        power.enqueue_actions([machine], "disk", actor)
    with pytest.raises(CapabilityMissing) as missing:
        registry.require("acme", registry.Capability.VIRTUAL_MEDIA, machine.hostname)
    assert not missing.value.retryable and "cannot do virtual media" in str(missing.value)


def test_an_install_needing_what_the_driver_lacks_is_refused_up_front(acme):
    machine = _acme_machine()
    with pytest.raises(InstallRefused) as refused:
        request_installs([machine.pk], OSProfile.objects.get(name="debian-12-preseed"), Actor.system("test"))
    (problem,) = refused.value.args[0]
    assert problem.startswith(f"{machine.hostname}: the ACME Lights-Out driver cannot do boot from network or disk.")
    assert "Workflow stock-installer needs it for “One-time boot from network” (set_boot_pxe)" in problem


def test_pages_api_and_command_line_show_the_plugin(acme):
    machine = _acme_machine()
    technician = user_with_role("technician")
    client = Client()
    client.force_login(technician)
    html = client.get(f"/machines/{machine.hostname}/").content.decode()
    assert "ACME Lights-Out" in html and "(plug-in from acme-bmc)" in html
    assert '<option value="on">' in html and '<option value="pxe">' not in html
    assert 'data-capability="power" title="offered"' in html
    assert 'data-capability="virtual_media" title="not offered by this driver"' in html

    _, key = create_token(technician, "test", actor=Actor.system("test"))
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    drivers = {d["name"]: d for d in api.get("/api/v1/drivers").json()["results"]}
    assert drivers["acme"] == {
        "name": "acme",
        "label": "ACME Lights-Out",
        "capabilities": ["power"],
        "default_port": 8443,
        "description": "ACME's own HTTP BMC.",
        "origin": "acme-bmc",
    }
    assert api.get(f"/api/v1/machines/{machine.hostname}").json()["capabilities"] == ["power"]
    refused = api.post(f"/api/v1/machines/{machine.hostname}/power", {"action": "pxe"}, content_type="application/json")
    assert refused.status_code == 409
    assert "the ACME Lights-Out driver cannot do boot from network or disk" in refused.json()["detail"]
    queued = api.post(f"/api/v1/machines/{machine.hostname}/power", {"action": "on"}, content_type="application/json")
    assert queued.status_code == 202 and queued.json()["action"] == "on"

    out, err = io.StringIO(), io.StringIO()
    call_command("drivers", stdout=out, stderr=err)
    assert any(line.startswith("acme ") and line.endswith("acme-bmc") for line in out.getvalue().splitlines())
    assert "not loaded: broken (acme-bmc)" in err.getvalue()
    out = io.StringIO()
    call_command("drivers", "--json", stdout=out)
    listed = {d["name"]: d for d in json.loads(out.getvalue())["drivers"]}
    assert listed["acme"]["capabilities"] == ["power"] and listed["redfish"]["origin"] == "built-in"
