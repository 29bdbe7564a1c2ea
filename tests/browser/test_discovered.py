"""A technician watches an unknown machine appear on the Discovered page (without reloading it) and accepts it
into a rack position: the registration comes over HTTP to the live daphne, as an agent's would."""

from __future__ import annotations

import json
import secrets
import urllib.request

import pytest

from inventory.models import DiscoveredMachine, Machine, OSProfile
from tests.browser.conftest import SCREENSHOTS, login
from tests.conftest import make_rack, make_site
from tests.integration.installs.test_discovery import facts
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.slow

MAC = "52:54:00:d1:5c:01"


def register(url: str) -> dict:
    body = json.dumps({"mac": MAC, "key": secrets.token_hex(32), "facts": facts(MAC)}).encode()
    request = urllib.request.Request(
        f"{url}/api/v1/discovery/register", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_a_registration_appears_and_is_accepted_from_the_browser(browser, live):
    memory_os = OSProfile.objects.create(name="memory-os", method="image", kernel="/m/vmlinuz", initrd="/m/initrd")
    site = make_site(slug="lab", name="Lab", discovery=True, provisioning_networks="127.0.0.0/8", memory_os=memory_os)
    make_rack(site, name="r01", height_u=42)
    user_with_role("technician", "tech")
    page = login(browser, live, "tech")

    page.goto(f"{live.url}/discovered/")
    assert "No discovered machine is waiting" in page.locator("table.discovered").inner_text()
    register(live.url)
    page.wait_for_selector(f"table.discovered >> text={MAC}", timeout=20000)  # the rows refresh themselves
    row = page.locator("table.discovered tbody tr").first.inner_text()
    assert "ABC1234" in row and "S1-AAA" in row and "52:54:00:d1:5c:02" in row
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "discovered.png"))

    page.click(f"text={MAC}")
    page.fill("input[name=hostname]", "new-01")
    page.select_option("select[name=rack]", label="lab/r01")
    page.fill("input[name=position_u]", "20")
    page.screenshot(path=str(SCREENSHOTS / "discovered-accept.png"), full_page=True)
    page.click("button:text('Accept')")
    page.wait_for_url(f"{live.url}/machines/new-01/")
    assert "is in inventory (status new)" in page.content()
    assert Machine.objects.get(hostname="new-01").pxe_nic.mac == MAC
    assert DiscoveredMachine.objects.get(mac=MAC).state == "accepted"
