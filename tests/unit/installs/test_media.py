"""An install's virtual media ISO: the name its URL carries (no credential, bound to the install) and the
command line on the CD (the network boot's, with the machine's static address for the agent)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from core.redaction import redact_text
from installs import media, render, tokens
from tests.unit.installs.test_step_table import a_plan

TOKEN = "boot-0123456789abcdefABCDEF"


def an_install(pk=42, nonce="0f" * 16):
    return SimpleNamespace(pk=pk, token_nonce=nonce, plan=a_plan("image", kernel_args="console=ttyS0,115200"))


def test_the_name_reveals_no_credential_and_opens_only_its_own_install():
    install = an_install()
    name = media.iso_name(install)
    assert name.startswith("42-") and name.endswith(".iso")
    for token in (tokens.boot_token(install.token_nonce), tokens.agent_token(install.token_nonce),
                  tokens.callback_token(install.token_nonce)):  # fmt: skip
        assert token[:40] not in name
    nonces = {42: install.token_nonce, 43: "aa" * 16}
    assert media.install_id_for(name, nonces.get) == 42
    assert media.install_id_for(name.replace("42-", "43-"), nonces.get) is None  # another install's id
    assert media.install_id_for(name, {}.get) is None  # no such active install
    assert media.install_id_for(name[:-5] + ("0" if name[-5] != "0" else "1") + ".iso", nonces.get) is None
    assert media.install_id_for("../42-x.iso", nonces.get) is None
    assert media.iso_url(install) == f"http://127.0.0.1:8000/boot/media/{name}"


def test_the_name_is_masked_in_logs():
    name = media.iso_name(an_install())
    line = f'127.0.0.1 "GET /boot/media/{name} HTTP/1.1" 200'
    assert redact_text(line) == '127.0.0.1 "GET /boot/media/42-[name].iso HTTP/1.1" 200'


def test_the_agent_gets_the_machines_static_address_and_the_profiles_args_last():
    plan = an_install().plan
    line = media.cmdline(plan, TOKEN)
    assert line == (
        "provisioner.url=http://127.0.0.1:8000 provisioner.token=boot-0123456789abcdefABCDEF "
        "provisioner.ip=10.0.0.5/24 provisioner.gateway=10.0.0.1 provisioner.dns=10.0.0.53 console=ttyS0,115200"
    )
    assert line.startswith(render.cmdline(plan, TOKEN).removesuffix(" console=ttyS0,115200"))


def test_dhcp_machines_and_installers_get_the_network_boots_line():
    plan = an_install().plan
    dhcp = dataclasses.replace(plan, machine=dataclasses.replace(plan.machine, ip=None, gateway=None, dns=()))
    assert media.cmdline(dhcp, TOKEN) == render.cmdline(dhcp, TOKEN)
    installer = a_plan("kickstart")
    assert media.cmdline(installer, TOKEN) == render.cmdline(installer, TOKEN)
