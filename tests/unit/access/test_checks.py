"""The verification checks on captured machine output: no network, no database."""

import json

import pytest

from access import checks

IP_JSON = json.dumps(
    [
        {
            "ifname": "lo",
            "flags": ["LOOPBACK", "UP", "LOWER_UP"],
            "address": "00:00:00:00:00:00",
            "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}],
        },
        {
            "ifname": "enp1s0f0",
            "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
            "address": "52:54:00:ab:cd:ef",
            "addr_info": [
                {"family": "inet", "local": "10.1.0.7", "prefixlen": 24},
                {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
            ],
        },
        {
            "ifname": "enp1s0f1",
            "flags": ["BROADCAST", "MULTICAST", "UP"],
            "address": "52:54:00:ab:cd:f0",
            "addr_info": [],
        },
        {"ifname": "enp2s0", "flags": ["BROADCAST", "MULTICAST"], "address": "52:54:00:ab:cd:f1", "addr_info": []},
    ]
)

OUTPUT = f"""\
@@provisioner-section hostname
web01
@@provisioner-section fqdn
web01.par1.example.net
@@provisioner-section os-release
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
ID="rocky"
VERSION_ID="9.4"
@@provisioner-section ip
{IP_JSON}
@@provisioner-section root
/dev/mapper/rl-root
@@provisioner-section root-disks
/dev/mapper/rl-root lvm
/dev/nvme0n1p3      part
/dev/nvme0n1        disk
@@provisioner-section expected-disk
/dev/nvme0n1
"""

EXPECTED = {
    "hostname": "web01.par1.example.net",
    "os": {"ID": "rocky", "VERSION_ID": "9"},
    "mac": "52:54:00:AB:CD:EF",
    "ip": "10.1.0.7",
    "prefix": 24,
    "root_disk": "/dev/disk/by-id/nvme-SAMSUNG_1",
}


def evaluate(output=OUTPUT, **expected):
    return {c.name: c for c in checks.evaluate(checks.parse(output), {**EXPECTED, **expected})}


def test_a_machine_as_installed_passes_every_check():
    results = evaluate()
    assert list(results) == ["hostname", "os_release", "nic", "root_disk"]
    assert all(c.ok for c in results.values()), results
    assert results["nic"].detail == "enp1s0f0 (52:54:00:ab:cd:ef) is up with 10.1.0.7/24"
    assert "/dev/disk/by-id/nvme-SAMSUNG_1 (/dev/nvme0n1)" in results["root_disk"].detail


def test_absent_expectations_are_not_checked():
    parsed = checks.parse(OUTPUT)
    assert [c.name for c in checks.evaluate(parsed, {"hostname": "web01"})] == ["hostname"]


@pytest.mark.parametrize(
    ("expected", "ok"),
    [("web01", True), ("web01.par1.example.net", True), ("web02", False), ("web01.elsewhere.net", False)],
)
def test_hostname_short_or_fully_qualified(expected, ok):
    assert evaluate(hostname=expected)["hostname"].ok is ok


def test_os_release_values_are_substrings():
    assert not evaluate(os={"ID": "rocky", "VERSION_ID": "8"})["os_release"].ok
    assert "VERSION_ID='9.4'" in evaluate(os={"VERSION_ID": "8"})["os_release"].detail


@pytest.mark.parametrize(
    ("expected", "detail"),
    [
        ({"mac": "52:54:00:00:00:00"}, "no interface has MAC 52:54:00:00:00:00"),
        ({"mac": "52:54:00:ab:cd:f0"}, "enp1s0f1 (52:54:00:ab:cd:f0) is up without carrier"),
        ({"mac": "52:54:00:ab:cd:f1"}, "enp2s0 (52:54:00:ab:cd:f1) is administratively down"),
        ({"ip": "10.1.0.8"}, "has 10.1.0.7/24, fe80::1/64, expected 10.1.0.8"),
        ({"prefix": 16}, "has 10.1.0.7/24, expected /16"),
    ],
)
def test_nic_failures_say_what_is_wrong(expected, detail):
    check = evaluate(**expected)["nic"]
    assert not check.ok
    assert detail in check.detail


def test_root_on_another_disk_or_not_on_a_disk():
    other = OUTPUT.replace(
        "@@provisioner-section expected-disk\n/dev/nvme0n1", "@@provisioner-section expected-disk\n/dev/sda"
    )
    check = evaluate(other, root_disk="/dev/sda")["root_disk"]
    assert not check.ok and "is on /dev/nvme0n1; expected /dev/sda" in check.detail
    overlay = OUTPUT.split("@@provisioner-section root\n")[0] + "@@provisioner-section root\noverlay\n"
    check = evaluate(overlay, root_disk="/dev/sda")["root_disk"]
    assert not check.ok and check.detail == "root filesystem is overlay, not on a local disk"


def test_missing_ip_json_is_a_failed_check_not_a_crash():
    broken = OUTPUT.replace(IP_JSON, 'Object "-j" is unknown')
    assert "no JSON" in evaluate(broken)["nic"].detail


def test_the_script_quotes_the_expected_disk():
    script = checks.script({"root_disk": "/dev/sda; rm -rf /"})
    assert "readlink -f -- '/dev/sda; rm -rf /'" in script
    assert all(line.startswith("printf") for line in script.splitlines())
