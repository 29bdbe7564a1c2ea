"""The lab's installer reads the rendered answer files for the HTTP calls their hooks make, in order."""

from __future__ import annotations

import pytest

from provisioner import pxe
from provisioner.lab.firmware import BootKind
from provisioner.lab.installer import HttpCall, autoinstall_hooks, hooks_for, http_calls, kickstart_hooks, preseed_hooks
from provisioner.pxe.stock import stock_profiles

TOKEN = "Tok3n_abcdefghijklmnop"
CALLBACK_TOKEN = "Callback_abcdefghijklmnop"
BASE = "http://127.0.0.1:8000"
# The hooks call back with the callback token written into the file, never the boot credential.
EVENTS = f"{BASE}/i/{CALLBACK_TOKEN}/events/"


def rendered(profile_name: str, **network) -> str:
    profile = next(p for p in stock_profiles() if p["name"] == profile_name)
    context = pxe.install_context(
        hostname="web01", domain="lab.example", mac="52:54:00:ab:cd:ef", base_url=BASE, token=TOKEN,
        callback_token=CALLBACK_TOKEN, disk="/dev/sda", root_password_hash="$6$x$y",
        ssh_keys=["ssh-ed25519 AAAA key@lab"],
        network=pxe.StaticAddress(**network) if network else None,
    )  # fmt: skip
    return pxe.render_template(profile["template"], context)


def urls(hooks_commands):
    return [(c.method, c.url) for command in hooks_commands for c in http_calls(command)]


@pytest.mark.parametrize("network", [{}, {"address": "10.0.0.5", "prefix": 24, "gateway": "10.0.0.1"}])
def test_preseed_started_early_then_progress_and_finished_late(network):
    hooks = preseed_hooks(rendered("debian-12-preseed", **network))
    assert urls(hooks.early) == [("POST", EVENTS + "started")]
    assert urls(hooks.late) == [("POST", EVENTS + "progress"), ("POST", EVENTS + "finished")]
    call = http_calls(hooks.late[0])[-1]
    assert call.body == b"step=late_command" and call.content_type == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("profile", ["rocky-9-kickstart", "centos-7-kickstart"])
def test_kickstart_pre_and_post(profile):
    hooks = kickstart_hooks(rendered(profile))
    assert urls(hooks.early) == [("POST", EVENTS + "started")]
    # %onerror is not run by a successful install.
    assert urls(hooks.late) == [("POST", EVENTS + "finished")]
    assert http_calls(hooks.late[0])[0].fail_on_http_error


def test_autoinstall_commands_and_webhook():
    hooks = autoinstall_hooks(rendered("ubuntu-24.04-autoinstall"))
    assert urls(hooks.early) == [("POST", EVENTS + "started")]
    assert urls(hooks.late) == [("POST", EVENTS + "finished")]
    assert hooks.webhooks == [EVENTS + "progress"]


def test_a_template_without_callbacks_has_none():
    hooks = hooks_for(BootKind.PRESEED, "d-i debian-installer/locale string en_US.UTF-8\n")
    assert hooks.early == [] and hooks.late == []


@pytest.mark.parametrize(
    "command, expected",
    [
        (
            "curl -fsS -X POST -d step=pre 'http://h/e/started' || true",
            HttpCall("POST", "http://h/e/started", b"step=pre", "application/x-www-form-urlencoded", True),
        ),
        (
            "wget -q -O /dev/null --post-data 'a=b' http://h/x; kill-all-dhcp; netcfg",
            HttpCall("POST", "http://h/x", b"a=b", "application/x-www-form-urlencoded", True),
        ),
        ("wget -qO- http://h/plain", HttpCall("GET", "http://h/plain", None, "", True)),
        (
            "in-target /usr/bin/curl -s --data=x http://h/d",
            HttpCall("POST", "http://h/d", b"x", "application/x-www-form-urlencoded", False),
        ),
        (
            'curl -H "Content-Type: application/json" -d \'{"a":1}\' http://h/j',
            HttpCall("POST", "http://h/j", b'{"a":1}', "application/json", False),
        ),
    ],
)
def test_http_calls_from_shell(command, expected):
    assert http_calls(command) == [expected]


def test_non_http_commands_are_skipped():
    assert http_calls("mkdir -p /target/root/.ssh; chmod 700 /target/root/.ssh && echo curl") == []


def test_a_comment_line_with_a_quote_hides_no_command_after_it():
    """The stock %onerror explains itself in a comment ("anaconda's syslog"): its curl must still be seen."""
    command = (
        "# The tail of anaconda's syslog goes with the report\n"
        "tail -n 50 /tmp/syslog | curl -fsS -X POST -d step=onerror --data-urlencode log@- 'http://h/e/failed' || true"
    )
    assert [(c.method, c.url) for c in http_calls(command)] == [("POST", "http://h/e/failed")]
