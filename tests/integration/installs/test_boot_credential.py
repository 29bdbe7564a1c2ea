"""The boot credential in a machine's boot files is good for one use: the agent's registration, or the
installer's fetch of the answer file that carries the callback token. That use hands over a token that
never appears in a boot file; a second use is refused, audited, and fails the install. Through Django's
request stack on real PostgreSQL and Redis, and the progress route as daphne serves it."""

import json
import re

import pytest

from audit.models import AuditEntry
from installs import tokens
from installs.models import Install, InstallState
from inventory.models import OSProfile
from tests.integration.installs.asgi_client import ROUTE, via_route
from tests.integration.installs.test_http import API, armed, bearer, callback_token_of, facts, post

THEIRS = "203.0.113.66"  # the address someone else presents a machine's boot credential from


@pytest.fixture(autouse=True)
def _close_writers():
    yield
    ROUTE.close()  # the progress route's connections, before the test database is flushed


def failed_for_reuse(install) -> Install:
    install = Install.objects.get(pk=install.pk)
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "BootCredentialReused")
    return install


def test_the_answer_file_spends_the_boot_credential_and_a_second_fetch_fails_the_install_safe(lab, client):
    machine, install, boot = armed(lab)
    first = client.get(f"/i/{boot}/preseed.cfg")
    assert first.status_code == 200 and b"d-i " in first.content
    assert Install.objects.get(pk=install.pk).boot_token_spent_at is not None

    again = client.get(f"/i/{boot}/preseed.cfg", REMOTE_ADDR=THEIRS)
    assert again.status_code == 403
    text = again.content.decode()
    assert "already used" in text and "opens nothing twice" in text and "d-i " not in text
    install = failed_for_reuse(install)
    message = install.failure_message
    assert f"{machine.hostname}'s boot config was used a second time (fetch of preseed.cfg from {THEIRS}" in message
    assert "first use was at" in message and "from 127.0.0.1" in message and "someone else" in message
    actions = ("install.boot_credential_used", "install.boot_credential_reused")
    used, reused = (AuditEntry.objects.get(action=a) for a in actions)
    assert (used.source_ip, reused.source_ip) == ("127.0.0.1", THEIRS)
    assert reused.details["first_used_from"] == "127.0.0.1" and reused.object_id == str(install.pk)
    # Failed safe: the callbacks the answer file carried are dead, the per-MAC configs go with the cleanup.
    assert client.post(f"/i/{callback_token_of(install)}/events/finished").status_code == 404
    lab.run_jobs()
    assert lab.per_mac_files(machine) == []


def test_meta_data_carries_no_secret_and_does_not_spend_the_boot_credential(lab, client):
    machine, install, boot = armed(lab, OSProfile.objects.get(name="ubuntu-24.04-autoinstall"))
    # cloud-init's order: meta-data, user-data, then vendor-data (which is not served, and is no use of it).
    for _ in range(2):
        meta = client.get(f"/i/{boot}/meta-data")
        assert meta.status_code == 200 and callback_token_of(install).encode() not in meta.content
    assert Install.objects.get(pk=install.pk).boot_token_spent_at is None
    user_data = client.get(f"/i/{boot}/user-data")
    assert user_data.status_code == 200 and f"/i/{callback_token_of(install)}/events/".encode() in user_data.content
    assert client.get(f"/i/{boot}/vendor-data").status_code == 404
    assert Install.objects.get(pk=install.pk).state == InstallState.BOOTING
    # Spent now: even meta-data is a second use.
    assert client.get(f"/i/{boot}/meta-data").status_code == 403
    failed_for_reuse(install)


def test_the_answer_files_callback_token_works_and_is_not_the_boot_credential(lab, client):
    machine, install, boot = armed(lab)
    body = client.get(f"/i/{boot}/preseed.cfg").content.decode()
    urls = set(re.findall(r"http://\S+/events/\w+", body))
    callback = callback_token_of(install)
    assert urls and all(f"/i/{callback}/events/" in url for url in urls) and callback != boot
    # The boot credential opens no callback: not found, and nothing happens to the install.
    assert client.post(f"/i/{boot}/events/finished").status_code == 404
    assert Install.objects.get(pk=install.pk).state == InstallState.BOOTING
    # The installer calls back with the URLs written inside its answer file, as the lab's installer does.
    started = next(u for u in urls if u.endswith("/started"))
    assert client.post(started[started.index("/i/") :]).json()["outcome"] == "booted"
    lab.run_jobs()
    assert client.post(f"/i/{callback}/events/finished").json()["outcome"] == "finished"
    lab.run_jobs()
    assert Install.objects.get(pk=install.pk).state == InstallState.SUCCEEDED


def test_the_agent_gets_its_token_at_registration_and_the_boot_credential_then_opens_nothing(lab, client):
    machine, install, boot = armed(lab, lab.image_profile())
    # Before its use, the boot credential opens registration only.
    assert post(client, "heartbeat", {}, boot).status_code == 401
    answer = post(client, "register", {**facts(machine.pxe_nic.mac), "key": "k" * 43}, boot).json()
    token = answer["token"]
    assert token == tokens.agent_token(Install.objects.get(pk=install.pk).token_nonce)
    assert len({boot, token, answer["callback_token"]}) == 3
    # What the boot files carry is dead for the agent API, the progress route and the answer files.
    assert post(client, "heartbeat", {}, boot).status_code == 401
    assert client.get(API + "tasks/next", **bearer(boot)).status_code == 401
    task = client.get(API + "tasks/next", **bearer(token)).json()["task"]
    assert via_route(f"tasks/{task['id']}/progress", {"percent": 5}, boot)[0] == 401
    assert via_route(f"tasks/{task['id']}/progress", {"percent": 5}, token)[0] == 200
    assert client.get(f"/i/{boot}/preseed.cfg").status_code == 404  # an image install serves no answer file
    assert post(client, "heartbeat", {}, token).json() == {"ok": True, "cancel": False}
    assert Install.objects.get(pk=install.pk).state == InstallState.INSTALLING
    # Registering with it again, even with the agent's own key once the agent token is in use: refused, failed safe.
    again = post(client, "register", {**facts(machine.pxe_nic.mac), "key": "k" * 43}, boot)
    assert again.status_code == 403 and again.json()["reason"] == "BootCredentialReused"
    assert "token" not in again.json() and token not in again.content.decode()
    failed_for_reuse(install)
    assert post(client, "heartbeat", {}, token).status_code == 401  # every token of the install died with it


def test_a_boot_credential_used_first_by_someone_else_fails_the_install_when_the_machine_registers(lab, client):
    machine, install, boot = armed(lab, lab.image_profile())
    mac = machine.pxe_nic.mac  # anyone on the provisioning network sees it in the DHCP broadcasts
    stolen = client.post(
        API + "register",
        data=json.dumps({**facts(mac), "key": "a" * 43}),
        content_type="application/json",
        REMOTE_ADDR=THEIRS,
        **bearer(boot),
    ).json()["token"]
    refused = post(client, "register", {**facts(mac), "key": "m" * 43}, boot)  # the machine, booting
    assert refused.status_code == 403 and refused.json()["reason"] == "BootCredentialReused"
    message = failed_for_reuse(install).failure_message
    assert "first use was at" in message and f"from {THEIRS}" in message
    assert post(client, "heartbeat", {}, stolen).status_code == 401  # what was taken opens nothing any more
    assert client.get(API + "tasks/next", **bearer(stolen)).status_code == 401


def test_a_lost_registration_answer_may_be_asked_for_again_only_with_the_same_key_and_only_once_unused(lab, client):
    machine, install, boot = armed(lab, lab.image_profile())
    body = {**facts(machine.pxe_nic.mac), "key": "K" * 43}
    token = post(client, "register", body, boot).json()["token"]  # ...and the answer is lost on the way
    again = post(client, "register", body, boot)
    assert again.status_code == 200 and again.json()["token"] == token
    assert AuditEntry.objects.filter(action="agent.register_again", object_id=str(install.pk)).count() == 1
    assert Install.objects.get(pk=install.pk).state in (InstallState.BOOTING, InstallState.INSTALLING)
    post(client, "heartbeat", {}, token)  # the agent has its token: the key is dead
    assert post(client, "register", body, boot).status_code == 403
    failed_for_reuse(install)


def test_asking_again_with_another_key_or_after_the_window_fails_the_install(lab, client, settings):
    machine, install, boot = armed(lab, lab.image_profile())
    post(client, "register", {**facts(machine.pxe_nic.mac), "key": "K" * 43}, boot)
    assert post(client, "register", {**facts(machine.pxe_nic.mac), "key": "X" * 43}, boot).status_code == 403
    failed_for_reuse(install)

    machine, install, boot = armed(lab, lab.image_profile())
    settings.AGENT_REGISTER_RETRY_S = 0
    post(client, "register", {**facts(machine.pxe_nic.mac), "key": "K" * 43}, boot)
    assert post(client, "register", {**facts(machine.pxe_nic.mac), "key": "K" * 43}, boot).status_code == 403
    failed_for_reuse(install)


def test_a_restarted_agent_registers_again_with_its_agent_token(lab, client):
    machine, install, boot = armed(lab, lab.image_profile())
    token = post(client, "register", facts(machine.pxe_nic.mac), boot).json()["token"]
    answer = post(client, "register", facts(machine.pxe_nic.mac), token)
    assert answer.status_code == 200 and answer.json()["token"] is None and answer.json()["callback_token"] is None
    assert Install.objects.get(pk=install.pk).state in (InstallState.BOOTING, InstallState.INSTALLING)
    assert AuditEntry.objects.filter(action="agent.register", object_id=str(install.pk)).count() == 2


def test_a_forged_boot_credential_opens_nothing_and_writes_nothing(lab, client):
    machine, install, boot = armed(lab, lab.image_profile())
    before = AuditEntry.objects.count()
    forged = boot[:-4] + ("0000" if not boot.endswith("0000") else "1111")
    assert post(client, "register", facts(machine.pxe_nic.mac), forged).status_code == 401
    assert client.get(f"/i/{forged}/preseed.cfg").status_code == 404
    assert AuditEntry.objects.count() == before
    install = Install.objects.get(pk=install.pk)
    assert install.state == InstallState.BOOTING and install.boot_token_spent_at is None


def test_an_installers_boot_credential_does_not_register_an_agent(lab, client):
    machine, install, boot = armed(lab)
    assert post(client, "register", facts(machine.pxe_nic.mac), boot).status_code == 401
    assert Install.objects.get(pk=install.pk).boot_token_spent_at is None
    assert client.get(f"/i/{boot}/preseed.cfg").status_code == 200  # the installer's one use is still to come


def test_boot_ipxe_carries_the_boot_credential_and_no_other_token(lab, client):
    machine, install, boot = armed(lab, lab.image_profile())
    nonce = Install.objects.get(pk=install.pk).token_nonce
    script = client.get("/boot/ipxe", {"mac": machine.pxe_nic.mac}).content.decode()
    assert f"provisioner.token={boot}" in script
    assert tokens.agent_token(nonce) not in script and tokens.callback_token(nonce) not in script
