"""The site's dnsmasq config: golden files for both modes, dnsmasq's own syntax check, refused inputs."""

import shutil
import subprocess
import sys

import pytest

from provisioner.pxe.dnsmasq import Reservation, SiteDhcp, render
from tests.unit.pxe.support import REPO, assert_golden, run

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

RESERVATIONS = (
    # Out of order and in mixed MAC spellings: the render sorts by address and writes one MAC spelling.
    Reservation(mac="52-54-00-00-00-02", ip="10.213.0.12", hostname="node02"),
    Reservation(mac="52:54:00:00:00:0A", ip="10.213.0.9", hostname="node10.dc1.example.net"),
    Reservation(mac="5254.0000.0001", ip="10.213.0.11", hostname="node01"),
)


def owning(**overrides) -> SiteDhcp:
    values = {
        "site": "dc1",
        "interface": "eno2",
        "server_ip": "10.213.0.1",
        "tftp_root": "/srv/tftp/dc1",
        "base_url": "http://10.213.0.1:8000",
        "dhcp_range": ("10.213.0.100", "10.213.0.199"),
        "router": "10.213.0.254",
        "dns_servers": ("10.213.0.53", "10.213.0.54"),
        "domain": "dc1.example.net",
        "lease_time": "12h",
        "user": "provisioner",
    }
    return SiteDhcp(**{**values, **overrides})


def proxy(**overrides) -> SiteDhcp:
    values = {
        "site": "dc2",
        "interface": "eth1",
        "server_ip": "10.213.0.1",
        "tftp_root": "/srv/tftp/dc2",
        "base_url": "https://pxe.dc2.example.net/",
        "proxy_subnet": "10.213.0.0/24",
        "efi_boot_file": "grubnetx64.efi",
    }
    return SiteDhcp(**{**values, **overrides})


def dnsmasq_test(tmp_path, text: str) -> subprocess.CompletedProcess:
    if not shutil.which(DNSMASQ):
        pytest.fail("dnsmasq is required (dnsmasq-base is listed in .ci/apt-packages; make test installs it)")
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(text)
    return run([DNSMASQ, "--test", f"--conf-file={conf}"])


def test_owning_range_matches_golden():
    assert_golden("dnsmasq-owning.conf", render(owning(), RESERVATIONS))


def test_proxy_matches_golden():
    assert_golden("dnsmasq-proxy.conf", render(proxy()))


@pytest.mark.parametrize(
    "site",
    [owning(), owning(router=None, dns_servers=(), domain=None), proxy()],
    ids=["owning", "owning-bare", "proxy"],
)
def test_dnsmasq_accepts_the_config(tmp_path, site):
    result = dnsmasq_test(tmp_path, render(site, () if site.proxy else RESERVATIONS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "syntax check OK" in result.stdout + result.stderr


def test_dnsmasq_test_does_catch_a_broken_line(tmp_path):
    # The syntax check above would be worthless if dnsmasq accepted anything.
    result = dnsmasq_test(tmp_path, render(owning()) + "dhcp-boot=tag:bios\n")
    assert result.returncode != 0


def test_boot_file_follows_architecture_and_ipxe_never_gets_a_loader():
    lines = render(owning()).splitlines()
    assert "dhcp-match=set:bios,option:client-arch,0" in lines
    assert "dhcp-match=set:efi64,option:client-arch,7" in lines
    assert "dhcp-match=set:efi64,option:client-arch,9" in lines
    assert "dhcp-userclass=set:ipxe,iPXE" in lines and "dhcp-match=set:ipxe,175" in lines
    boots = [line for line in lines if line.startswith("dhcp-boot=")]
    assert boots == [
        "dhcp-boot=tag:ipxe,http://10.213.0.1:8000/boot/ipxe?mac=${netX/mac}",
        "dhcp-boot=tag:bios,tag:!ipxe,pxelinux.0,,10.213.0.1",
        "dhcp-boot=tag:efi64,tag:!ipxe,grubx64.efi,,10.213.0.1",
    ]


def test_tftp_is_served_from_the_site_root_in_secure_mode():
    lines = render(owning()).splitlines()
    assert {"enable-tftp", "tftp-root=/srv/tftp/dc1", "tftp-secure", "user=provisioner", "port=0"} <= set(lines)


def test_owning_mode_reserves_each_nic_and_proxy_mode_does_not_own_addresses():
    text = render(owning(), RESERVATIONS)
    assert [line for line in text.splitlines() if line.startswith("dhcp-host=")] == [
        "dhcp-host=52:54:00:00:00:0a,10.213.0.9,node10.dc1.example.net",
        "dhcp-host=52:54:00:00:00:01,10.213.0.11,node01",
        "dhcp-host=52:54:00:00:00:02,10.213.0.12,node02",
    ]
    assert "dhcp-range=10.213.0.100,10.213.0.199,12h" in text and "dhcp-authoritative" in text
    proxy_text = render(proxy())
    assert "dhcp-range=10.213.0.0,proxy,255.255.255.0" in proxy_text.splitlines()
    assert "dhcp-authoritative" not in proxy_text and "dhcp-host=" not in proxy_text
    services = [line for line in proxy_text.splitlines() if line.startswith("pxe-service=")]
    assert services == [
        'pxe-service=tag:!ipxe,x86PC,"provisioner (BIOS)",pxelinux.0,10.213.0.1',
        'pxe-service=tag:!ipxe,x86-64_EFI,"provisioner (UEFI)",grubnetx64.efi,10.213.0.1',
        'pxe-service=tag:!ipxe,BC_EFI,"provisioner (UEFI)",grubnetx64.efi,10.213.0.1',
    ]
    # A trailing slash on the base URL must not become '//' in the iPXE URL.
    assert "dhcp-boot=tag:ipxe,https://pxe.dc2.example.net/boot/ipxe?mac=${netX/mac}" in proxy_text


def test_without_router_dnsmasq_is_told_to_send_none():
    lines = render(owning(router=None)).splitlines()
    assert "dhcp-option=option:router" in lines
    assert not any(line.startswith("dhcp-option=option:router,") for line in lines)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"interface": "eth 1"}, "'eth 1'"),
        ({"interface": "averyveryverylongname0"}, "averyveryverylongname0"),
        ({"server_ip": "10.213.0.300"}, "server IP is not an IPv4 address: '10.213.0.300'"),
        ({"tftp_root": "srv/tftp"}, "'srv/tftp'"),
        ({"tftp_root": "/srv/tftp,eth0"}, "'/srv/tftp,eth0'"),
        ({"tftp_root": "/srv/../etc"}, "'/srv/../etc'"),
        ({"base_url": "ftp://10.213.0.1"}, "'ftp://10.213.0.1'"),
        ({"base_url": "http://10.213.0.1/x?y=1"}, "without query"),
        ({"base_url": "http://10.213.0.1/a,b"}, "'http://10.213.0.1/a,b'"),
        ({"base_url": "http://example.net/" + "p" * 120}, "longer than the 127 bytes"),
        ({"dhcp_range": ("10.213.0.199", "10.213.0.100")}, "backwards: 10.213.0.199 is after 10.213.0.100"),
        ({"dhcp_range": ("10.213.0.1", "10.213.0.10")}, "server IP 10.213.0.1 lies inside"),
        ({"dhcp_range": ("10.213.0.100", "10.213.0.x")}, "'10.213.0.x'"),
        ({"dhcp_range": None}, "exactly one of"),
        ({"proxy_subnet": "10.213.0.0/24"}, "exactly one of"),
        ({"router": "gateway"}, "router is not an IPv4 address: 'gateway'"),
        ({"dns_servers": ("10.213.0.53", "ns1")}, "DNS server is not an IPv4 address: 'ns1'"),
        ({"dns_servers": "10.213.0.53"}, "not one string: '10.213.0.53'"),
        ({"domain": "Bad_Domain"}, "'Bad_Domain'"),
        ({"lease_time": "1y"}, "'1y'"),
        ({"lease_time": "60"}, "shorter than dnsmasq's minimum"),
        ({"user": "root; rm"}, "'root; rm'"),
        ({"bios_boot_file": "../pxelinux.0"}, "'../pxelinux.0'"),
        ({"efi_boot_file": "/grubx64.efi"}, "'/grubx64.efi'"),
        ({"site": "dc 1"}, "'dc 1'"),
    ],
)
def test_bad_site_options_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")):
        owning(**overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"proxy_subnet": "10.213.0.1/24"}, "'10.213.0.1/24'"),
        ({"proxy_subnet": "10.99.0.0/24"}, "server IP 10.213.0.1 is not in the proxy subnet 10.99.0.0/24"),
        ({"router": "10.213.0.254"}, "router cannot be set in proxy mode"),
        ({"dns_servers": ("10.213.0.53",), "domain": "x.example"}, "dns_servers, domain cannot be set"),
    ],
)
def test_bad_proxy_options_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        proxy(**overrides)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mac": "52:54:00:00:00", "ip": "10.213.0.11", "hostname": "n1"}, "malformed MAC address: '52:54:00:00:00'"),
        ({"mac": "52:54:00:00:00:01", "ip": "10.213.0.256", "hostname": "n1"}, "'10.213.0.256'"),
        ({"mac": "52:54:00:00:00:01", "ip": "fd00::1", "hostname": "n1"}, "'fd00::1'"),
        ({"mac": "52:54:00:00:00:01", "ip": "10.213.0.11", "hostname": "Node_1"}, "'Node_1'"),
        ({"mac": "52:54:00:00:00:01", "ip": "10.213.0.11", "hostname": "n1,10.0.0.1"}, "'n1,10.0.0.1'"),
    ],
)
def test_bad_reservations_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Reservation(**kwargs)


def r(mac_tail: str, ip_tail: str, hostname: str) -> Reservation:
    return Reservation(f"52:54:00:00:00:{mac_tail}", f"10.213.0.{ip_tail}", hostname)


@pytest.mark.parametrize(
    ("reservations", "message"),
    [
        ([r("01", "11", "a"), r("01", "12", "b")], "MAC 52:54:00:00:00:01 is reserved twice: for a and b"),
        ([r("01", "11", "a"), r("02", "11", "b")], "IP 10.213.0.11 is reserved twice"),
        ([r("01", "11", "a"), r("02", "12", "a")], "host name a is reserved twice"),
        ([r("01", "1", "a")], "a is reserved 10.213.0.1, the server's"),
        ([r("01", "254", "a")], "a is reserved 10.213.0.254, the server's or router"),
        (["52:54:00:00:00:01 10.213.0.11 a"], "not a Reservation"),
    ],
)
def test_conflicting_reservations_are_refused(reservations, message):
    with pytest.raises(ValueError, match=message):
        render(owning(), reservations)


def test_proxy_mode_refuses_reservations():
    with pytest.raises(ValueError, match="in proxy mode the existing DHCP server hands out addresses"):
        render(proxy(), RESERVATIONS[:1])


def test_options_are_normalised_so_equal_sites_render_equally():
    site = owning(server_ip=" 10.213.0.1", dhcp_range=["10.213.0.100", "10.213.0.199"])
    assert site.dhcp_range == ("10.213.0.100", "10.213.0.199") and site.server_ip == "10.213.0.1"
    assert render(site) == render(owning())


def test_dnsmasq_module_imports_without_django():
    code = (
        "import sys\n"
        "import provisioner.pxe.dnsmasq\n"
        "sys.exit(1 if any(m == 'django' or m.startswith('django.') for m in sys.modules) else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
