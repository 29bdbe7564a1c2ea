"""Stock answer files: golden files, the installers' own validators, and NIC selection by MAC."""

import re

import pytest

from provisioner.pxe import Method, kernel_cmdline, render_template
from provisioner.pxe.stock import META_DATA_TEMPLATE, STOCK_PROFILE_NAMES, stock_profile, stock_profiles
from tests.unit.pxe.support import (
    BASE_URL,
    CALLBACK_TOKEN,
    GUESSED_NIC_NAMES,
    KSVALIDATOR,
    MAC,
    TOKEN,
    assert_golden,
    cloud_init_tool,
    context,
    run,
)

ANSWER_PROFILES = ["ubuntu-24.04-autoinstall", "debian-12-preseed", "rocky-9-kickstart", "centos-7-kickstart"]
CHECK_SCRIPT = __file__.replace("test_answer_files.py", "autoinstall_check.py")


def rendered(profile: str, *, static: bool = True) -> str:
    return render_template(stock_profile(profile)["template"], context(static=static))


def test_stock_profiles_are_the_agreed_set():
    assert STOCK_PROFILE_NAMES == (
        "ubuntu-24.04-autoinstall",
        "debian-12-preseed",
        "rocky-9-kickstart",
        "centos-7-kickstart",
        "memory-os-image",
    )
    methods = {p["name"]: p["method"] for p in stock_profiles()}
    assert methods == {
        "ubuntu-24.04-autoinstall": "autoinstall",
        "debian-12-preseed": "preseed",
        "rocky-9-kickstart": "kickstart",
        "centos-7-kickstart": "kickstart",
        "memory-os-image": "image",
    }
    for profile in stock_profiles():
        assert set(profile) == {
            "name",
            "method",
            "kernel",
            "initrd",
            "kernel_args",
            "target_disk",
            "template",
            "image_url",
            "image_sha256",
            "legacy_anaconda",
        }
        assert profile["kernel"].startswith("/images/") and profile["initrd"].startswith("/images/")
        assert "BOOTIF" not in profile["kernel_args"]
        assert bool(profile["template"]) == (profile["method"] != "image")
    # Callers get copies: editing one must not change the shipped data.
    stock_profiles()[0]["name"] = "edited"
    assert stock_profiles()[0]["name"] == "ubuntu-24.04-autoinstall"


@pytest.mark.parametrize("profile", ANSWER_PROFILES)
@pytest.mark.parametrize("static", [True, False], ids=["static", "dhcp"])
def test_stock_answer_file_matches_golden(profile, static):
    assert_golden(f"{profile}-{'static' if static else 'dhcp'}.txt", rendered(profile, static=static))


def test_meta_data_matches_golden():
    assert_golden("ubuntu-24.04-autoinstall-meta-data.txt", render_template(META_DATA_TEMPLATE, context()))


@pytest.mark.parametrize("profile", ANSWER_PROFILES)
@pytest.mark.parametrize("static", [True, False], ids=["static", "dhcp"])
def test_answer_file_selects_nic_by_mac_and_calls_back(profile, static):
    text = rendered(profile, static=static)
    assert MAC in text
    for name in GUESSED_NIC_NAMES:
        assert not re.search(rf"\b{name}\b", text), f"{profile} names interface {name}"
    events = f"{BASE_URL}/i/{CALLBACK_TOKEN}/events/"
    assert f"{events}started" in text and f"{events}finished" in text
    assert f"/i/{TOKEN}/events/" not in text  # the boot credential is spent by this file's fetch
    for key in context()["ssh_keys"] + context()["ssh_ca_keys"]:
        assert key in text
    # The installed sshd trusts the site's user CA, so a session's short-lived certificate logs in.
    assert "TrustedUserCAKeys /etc/ssh/provisioner-user-ca.pub" in text
    assert context()["root_password_hash"] in text
    assert ("192.0.2.50" in text) is static


@pytest.mark.parametrize(("profile", "version"), [("rocky-9-kickstart", "RHEL9"), ("centos-7-kickstart", "RHEL7")])
@pytest.mark.parametrize("static", [True, False], ids=["static", "dhcp"])
def test_kickstart_passes_ksvalidator(tmp_path, profile, version, static):
    path = tmp_path / "ks.cfg"
    path.write_text(rendered(profile, static=static))
    result = run([KSVALIDATOR, "-e", "-v", version, path])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ksvalidator_rejects_a_broken_kickstart(tmp_path):
    path = tmp_path / "ks.cfg"
    path.write_text(rendered("rocky-9-kickstart").replace("--size=1 --grow", "--size=one --grow"))
    assert run([KSVALIDATOR, "-e", "-v", "RHEL9", path]).returncode != 0


@pytest.mark.parametrize("static", [True, False], ids=["static", "dhcp"])
def test_preseed_passes_debconf_checkonly(tmp_path, static):
    path = tmp_path / "preseed.cfg"
    path.write_text(rendered("debian-12-preseed", static=static))
    result = run(["debconf-set-selections", "--checkonly", path])
    # It exits 0 for many mistakes and only complains on stderr, so any output is a failure.
    assert result.returncode == 0 and not result.stderr, result.stderr


def test_debconf_checkonly_reports_a_line_missing_a_field(tmp_path):
    path = tmp_path / "preseed.cfg"
    path.write_text(rendered("debian-12-preseed") + "d-i netcfg/get_hostname\n")
    assert run(["debconf-set-selections", "--checkonly", path]).stderr


def test_preseed_late_command_is_one_debconf_value():
    # A continuation line that lost its backslash would become a separate, malformed debconf line.
    text = rendered("debian-12-preseed")
    block = text[text.index("d-i preseed/late_command") :].split("\n\n")[0].splitlines()
    assert all(line.endswith("\\") for line in block[:-1]) and not block[-1].endswith("\\")


@pytest.mark.parametrize("static", [True, False], ids=["static", "dhcp"])
def test_autoinstall_user_data_passes_cloud_init_schema_and_structure_check(tmp_path, static):
    user_data = tmp_path / "user-data"
    inner = tmp_path / "inner-user-data"
    user_data.write_text(rendered("ubuntu-24.04-autoinstall", static=static))
    result = run([cloud_init_tool("cloud-init"), "schema", "--config-file", user_data])
    assert result.returncode == 0, result.stdout + result.stderr
    result = run([cloud_init_tool("python"), CHECK_SCRIPT, user_data, inner])
    assert result.returncode == 0, result.stdout + result.stderr
    # The installed system's own cloud-config, nested under autoinstall.user-data, must be valid too.
    result = run([cloud_init_tool("cloud-init"), "schema", "--config-file", inner])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (("macaddress:", "name:"), "macaddress"),
        (("late-commands:", "late_commands:"), "late_commands"),
        (("version: 1", "version: 2"), "version"),
    ],
)
def test_structure_check_rejects_broken_autoinstall(tmp_path, edit, complaint):
    path = tmp_path / "user-data"
    path.write_text(rendered("ubuntu-24.04-autoinstall").replace(*edit, 1))
    result = run([cloud_init_tool("python"), CHECK_SCRIPT, path])
    assert result.returncode == 1 and complaint in result.stdout, result.stdout + result.stderr


def test_cloud_init_schema_rejects_a_bad_module_config(tmp_path):
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\nruncmd: 5\n")
    assert run([cloud_init_tool("cloud-init"), "schema", "--config-file", path]).returncode != 0


def cmdline(method: str, **kwargs) -> str:
    return kernel_cmdline(
        method, mac=MAC.upper(), base_url=BASE_URL, token=TOKEN, hostname="node01", domain="dc1.example.net", **kwargs
    )


def test_kernel_cmdline_per_method():
    seed = f"{BASE_URL}/i/{TOKEN}/"
    assert cmdline(Method.PRESEED) == (
        f"auto=true priority=critical url={seed}preseed.cfg netcfg/choose_interface={MAC} "
        "netcfg/get_hostname=node01 netcfg/get_domain=dc1.example.net"
    )
    assert cmdline("kickstart") == f"inst.ks={seed}ks.cfg inst.ks.device={MAC} ip=dhcp"
    assert cmdline("kickstart", legacy_anaconda=True) == f"ks={seed}ks.cfg ksdevice={MAC} ip=dhcp"
    assert cmdline("autoinstall") == f"autoinstall ds=nocloud-net;s={seed} ip=dhcp cloud-config-url=/dev/null"
    assert cmdline("image", extra_args="console=ttyS0  quiet") == (
        f"provisioner.url={BASE_URL} provisioner.token={TOKEN} console=ttyS0 quiet"
    )


@pytest.mark.parametrize("profile", STOCK_PROFILE_NAMES)
def test_stock_profile_cmdline_never_names_a_guessed_nic(profile):
    p = stock_profile(profile)
    text = cmdline(p["method"], extra_args=p["kernel_args"], legacy_anaconda=p["legacy_anaconda"])
    for name in GUESSED_NIC_NAMES:
        assert not re.search(rf"\b{name}\b", text)
    assert "BOOTIF" not in text  # the boot config adds it, once


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "ftp://x"}, "base URL"),
        ({"token": "short"}, "boot credential"),
        ({"token": "a/../../etc/passwd-xxxxxx"}, "boot credential"),
        ({"mac": "zz"}, "'zz'"),
    ],
)
def test_kernel_cmdline_refuses_bad_input(kwargs, message):
    values = {"mac": MAC, "base_url": BASE_URL, "token": TOKEN} | kwargs
    with pytest.raises(ValueError, match=message):
        kernel_cmdline("kickstart", **values)
