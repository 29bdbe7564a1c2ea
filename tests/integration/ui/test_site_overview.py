"""The site overview (/sites/<slug>/): every rack of a site side by side, who may see it, what each machine box
says beside its colour, and a number of queries that does not grow with the racks and machines."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from console.racks import rack_drawing
from inventory.models import Machine, MachineStatus, PowerState
from tests.conftest import make_machine, make_rack, make_site
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db


def client_for(role: str) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(user_with_role(role, f"{role}-sites"))
    return client


@pytest.mark.parametrize("role", ["anonymous", "norole", "staff", "viewer", "technician", "admin"])
@pytest.mark.parametrize("name", ["overview", "partial", "list"])
def test_viewers_and_up_see_the_site_pages(scene, role, name):
    url = {
        "overview": reverse("inventory:site-overview", args=[scene.site.slug]),
        "partial": reverse("inventory:site-overview", args=[scene.site.slug]) + "?partial=1",
        "list": reverse("inventory:site-list"),
    }[name]
    response = client_for(role).get(url)
    if role == "anonymous":
        assert response.status_code == 302 and "/login/" in response["Location"]
    elif role in ("norole", "staff"):
        assert response.status_code == 403
    else:
        assert response.status_code == 200


def test_an_unknown_site_is_not_found(scene):
    assert client_for("viewer").get(reverse("inventory:site-overview", args=["nowhere"])).status_code == 404


def test_each_machine_says_its_state_power_failure_and_hardware(scene):
    Machine.objects.filter(pk=scene.busy.pk).update(
        power_state=PowerState.ON, cpu_cores=32, memory_bytes=256 * 2**30, disk_count=2, nvme_count=2
    )
    other_rack = make_rack(scene.site, name="r02", height_u=42)
    make_machine(other_rack, hostname="spare-01", position_u=40, status=MachineStatus.READY)
    make_machine(make_rack(make_site(slug="elsewhere")), hostname="far-01", position_u=1)

    html = client_for("viewer").get(reverse("inventory:site-overview", args=[scene.site.slug])).content.decode()

    assert html.count('<figure class="rack">') == 2  # both racks of the site, side by side, none of another
    assert "far-01" not in html
    # busy-01 has an install in flight: its state is the install's, in words beside the colour, with its power.
    assert 'class="m s-installing"' in html and "installing · on" in html
    assert 'data-facts="32 cores · 256 GiB · 2 disks (2 NVMe)"' in html
    # idle-01's last install failed: the failure mark and the word, not only the red.
    assert 'data-machine="idle-01" data-state="new"' in html
    assert html.count('class="mfail"') == 1 and "new · power ?" in html and "(failure)" in html
    assert "hardware not recorded yet" in html
    assert "2 racks, 3 machines" in html
    assert 'href="/machines/spare-01/"' in html and "ready · power ?" in html
    # Live: the page listens to the dashboard stream and re-fetches its grid.
    assert 'data-live="dashboard"' in html
    assert f'data-refresh="/sites/{scene.site.slug}/?partial=1"' in html
    assert "Front view" in html


def test_the_partial_is_the_grid_alone(scene):
    html = client_for("viewer").get(reverse("inventory:site-overview", args=[scene.site.slug]) + "?partial=1")
    text = html.content.decode()
    assert text.lstrip().startswith('<div class="racks">') and "busy-01" in text and "<html" not in text


def test_the_site_list_counts_and_links_the_overviews(scene):
    make_machine(make_rack(scene.site), hostname="other-01")
    html = client_for("viewer").get(reverse("inventory:site-list")).content.decode()
    assert f'href="/sites/{scene.site.slug}/"' in html
    row = html[html.index(f"/sites/{scene.site.slug}/") :]
    row = row[: row.index("</tr>")]
    assert '<td class="num">2</td>' in row and '<td class="num">3</td>' in row


def test_the_dashboard_and_the_rack_list_link_the_overview(scene):
    client = client_for("viewer")
    overview = f'href="/sites/{scene.site.slug}/"'
    assert overview in client.get(reverse("inventory:rack-list")).content.decode()
    assert overview in client.get(reverse("home")).content.decode()


def fill_site(site, racks: int, per_rack: int) -> None:
    for r in range(racks):
        rack = make_rack(site, name=f"q{r:02d}", height_u=42)
        for u in range(per_rack):
            make_machine(rack, hostname=f"{site.slug}-{r:02d}-{u:02d}", position_u=1 + u, with_nic=False)


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_queries_do_not_grow_with_racks_and_machines(db):
    small, large = make_site(slug="small"), make_site(slug="large")
    fill_site(small, racks=2, per_rack=3)
    fill_site(large, racks=10, per_rack=12)
    client = client_for("viewer")
    client.get(reverse("inventory:site-list"))  # the session and the user's groups are warm for both
    for partial in ("", "?partial=1"):
        few = queries_for(client, reverse("inventory:site-overview", args=["small"]) + partial)
        many = queries_for(client, reverse("inventory:site-overview", args=["large"]) + partial)
        assert few == many, (partial, few, many)
        assert many <= 8


def test_a_box_escapes_every_text_it_draws(db):
    rack = make_rack(make_site(slug="esc"), height_u=4)
    machine = Machine(hostname='x"><script>alert(1)</script>', rack=rack, position_u=1, height_u=1, status="new")
    machine.last_install_id = machine.last_install_state = None
    drawing = rack_drawing(rack, [machine])
    svg = str(drawing["svg"])
    assert "<script>" not in svg and 'x"><' not in svg
    assert "x&quot;&gt;&lt;script&gt;" in svg
    assert svg.count("<a ") == 1 and svg.count("</a>") == 1


def test_with_no_site_the_list_says_so_and_the_admin_is_shown_where_to_add_one(db):
    admin_page = client_for("admin").get(reverse("inventory:site-list")).content.decode()
    viewer_page = client_for("viewer").get(reverse("inventory:site-list")).content.decode()
    assert "No sites yet" in admin_page and reverse("admin:inventory_site_add") in admin_page
    assert "No sites yet" in viewer_page and reverse("admin:inventory_site_add") not in viewer_page


def test_a_rack_with_half_depth_machines_shows_its_rear(db):
    rack = make_rack(make_site(slug="depth"), height_u=6)
    make_machine(rack, hostname="full-1", position_u=1, height_u=2)
    make_machine(rack, hostname="front-3", position_u=3, depth="front")
    make_machine(rack, hostname="rear-3", position_u=3, depth="rear")
    viewer = client_for("viewer")
    page = viewer.get(reverse("inventory:site-overview", args=["depth"])).content.decode()
    front, rear = page.split('aria-label="Rear of rack')
    assert 'aria-label="Front of rack' in front
    assert 'data-machine="full-1"' in front and 'data-machine="front-3"' in front and "rear-3" not in front
    rear = rear.split("</svg>")[0]
    assert 'data-machine="rear-3"' in rear and "front-3" not in rear
    assert "full-1 (back)" in rear and 'data-machine="full-1"' not in rear  # one link, one Tab stop per machine
    assert "3 machines" in page

    only_full = make_rack(make_site(slug="flat"), height_u=4)
    make_machine(only_full, hostname="flat-1", position_u=1)
    assert "Rear of rack" not in viewer.get(reverse("inventory:site-overview", args=["flat"])).text
