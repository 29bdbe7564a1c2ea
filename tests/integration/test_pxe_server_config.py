"""`manage.py pxe_server_config`: reservations read from inventory, written atomically, checked by dnsmasq."""

import io
import os
import shutil
import stat
import subprocess

import pytest
from django.core.management import CommandError, call_command

from inventory.models import NIC
from provisioner.pxe.dnsmasq import Reservation, SiteDhcp, render
from tests.conftest import make_machine, make_rack, make_site

pytestmark = pytest.mark.django_db

OWNING = ["--interface", "eno2", "--server-ip", "10.213.0.1", "--range", "10.213.0.100,10.213.0.199"]


def pxe_nic(machine, ip=None, prefix_len=24):
    nic = machine.nics.get(is_pxe=True)
    if ip is not None:
        nic.ip, nic.prefix_len = ip, prefix_len
        nic.save()
    return nic


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("pxe_server_config", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def site():
    """A site with every kind of NIC the command must sort: reserved, not reserved, elsewhere, IPv6."""
    site = make_site(slug="dc1", tftp_root="/srv/tftp/dc1", base_url="http://10.213.0.1:8000")
    rack = make_rack(site)
    reserved_a = make_machine(rack, hostname="node-b", position_u=1)
    reserved_b = make_machine(rack, hostname="node-a", position_u=2)
    pxe_nic(reserved_a, "10.213.0.12")
    pxe_nic(reserved_b, "10.213.0.11")
    make_machine(rack, hostname="dynamic", position_u=3)  # PXE NIC without a static IP: gets one from the range
    not_pxe = make_machine(rack, hostname="second-nic", position_u=4)
    NIC.objects.create(machine=not_pxe, mac="52:54:00:aa:00:01", is_pxe=False, ip="10.213.0.40", prefix_len=24)
    pxe_nic(make_machine(rack, hostname="v6only", position_u=5), "fd00::5", 64)
    pxe_nic(make_machine(make_rack(make_site(slug="dc2")), hostname="elsewhere"), "10.213.0.13")
    site.expected = [
        Reservation(mac=pxe_nic(reserved_b).mac, ip="10.213.0.11", hostname="node-a"),
        Reservation(mac=pxe_nic(reserved_a).mac, ip="10.213.0.12", hostname="node-b"),
    ]
    return site


def test_stdout_is_the_render_of_inventory_reservations(site):
    out, err = run("--site", "dc1", *OWNING, "--dns", "10.213.0.53,10.213.0.54", "--domain", "dc1.example.net")
    expected = render(
        SiteDhcp(
            site="dc1",
            interface="eno2",
            server_ip="10.213.0.1",
            tftp_root="/srv/tftp/dc1",
            base_url="http://10.213.0.1:8000",
            dhcp_range=("10.213.0.100", "10.213.0.199"),
            dns_servers=("10.213.0.53", "10.213.0.54"),
            domain="dc1.example.net",
        ),
        site.expected,
    )
    assert out == expected
    hosts = [line for line in out.splitlines() if line.startswith("dhcp-host=")]
    assert hosts == [f"dhcp-host={r.mac},{r.ip},{r.hostname}" for r in site.expected]
    assert "Skipping v6only: fd00::5 is IPv6" in err


def test_output_file_is_replaced_whole_readable_and_accepted_by_dnsmasq(site, tmp_path):
    target = tmp_path / "etc" / "provisioner-dc1.conf"
    target.parent.mkdir()
    target.write_text("old\n")
    _, err = run("--site", "dc1", *OWNING, "--output", str(target), "--dns", "10.213.0.53", "--dns", "10.213.0.54")
    text = target.read_text()
    assert text.startswith("# dnsmasq for site dc1: owning the range.\n")
    assert "dhcp-option=option:dns-server,10.213.0.53,10.213.0.54" in text
    assert "tftp-root=/srv/tftp/dc1" in text
    assert "dhcp-boot=tag:ipxe,http://10.213.0.1:8000/boot/ipxe?mac=${netX/mac}" in text
    assert f"Wrote {target} for site dc1 (2 reservations)." in err
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # dnsmasq reads it after dropping privileges
    assert os.listdir(target.parent) == [target.name]  # no temporary file left behind
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not os.path.exists(dnsmasq):
        pytest.fail("dnsmasq is required (dnsmasq-base is listed in .ci/apt-packages; make test installs it)")
    check = subprocess.run([dnsmasq, "--test", f"--conf-file={target}"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_proxy_mode_writes_no_reservations_and_lists_them_for_the_other_server(site):
    out, err = run("--site", "dc1", "--interface", "eno2", "--server-ip", "10.213.0.1", "--proxy", "10.213.0.0/24")
    assert "dhcp-range=10.213.0.0,proxy,255.255.255.0" in out
    assert "dhcp-host=" not in out and "pxe-service=tag:!ipxe,x86PC," in out
    assert "reserve these 2 PXE NICs there: node-a" in err and "node-b" in err and "10.213.0.12" in err


def test_machine_edits_show_up_on_the_next_run(site):
    pxe_nic(make_machine(make_rack(site), hostname="late"), "10.213.0.20")
    out, _ = run("--site", "dc1", *OWNING)
    assert any(line.startswith("dhcp-host=") and line.endswith(",10.213.0.20,late") for line in out.splitlines())


def test_unknown_site_names_the_known_ones(site):
    with pytest.raises(CommandError, match=r"No site 'nope' \(known: dc1, dc2\)"):
        run("--site", "nope", *OWNING)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interface", "eno2", "--server-ip", "10.213.0.1", "--range", "10.213.0.100"], "START,END: '10.213.0.100'"),
        (["--interface", "eno2", "--server-ip", "10.213.0.x", "--range", "10.213.0.100,10.213.0.199"], "10.213.0.x"),
        (["--interface", "eno2", "--server-ip", "10.213.0.1", "--proxy", "10.99.0.0/24"], "not in the proxy subnet"),
        ([*OWNING, "--lease-time", "30s"], "shorter than dnsmasq's minimum"),
    ],
)
def test_bad_flags_are_refused_naming_the_value(site, args, message):
    with pytest.raises(CommandError, match=message):
        run("--site", "dc1", *args)


def test_bad_inventory_value_is_refused_and_nothing_is_written(site, tmp_path):
    site.tftp_root = "/srv/tftp/dc 1"
    site.save()
    target = tmp_path / "dnsmasq.conf"
    with pytest.raises(CommandError, match="'/srv/tftp/dc 1'"):
        run("--site", "dc1", *OWNING, "--output", str(target))
    assert not target.exists()
