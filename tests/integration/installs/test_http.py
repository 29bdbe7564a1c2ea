"""What machines call over HTTP: the iPXE script by MAC, answer files by the boot credential, installer
callbacks by the callback token, and the agent API. Through Django's full request stack on real PostgreSQL
and Redis. (The boot credential's one use and what a second one does: test_boot_credential.py.)"""

import json

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from audit.service import Actor
from core import problems
from installs import callbacks, engine, tokens
from installs.models import Event, Install, InstallState, StepKind
from inventory.models import OSProfile
from tests.integration.installs.asgi_client import API, via_route


def token_of(install):
    """The boot credential, as the boot files carry it."""
    return tokens.boot_token(Install.objects.get(pk=install.pk).token_nonce)


def callback_token_of(install):
    return tokens.callback_token(Install.objects.get(pk=install.pk).token_nonce)


def armed(lab, profile=None):
    machine = lab.machine()
    install = lab.install([machine], profile)
    lab.run_jobs()
    return machine, install, token_of(install)


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_ipxe_serves_the_armed_install_and_local_boot_for_everything_else(lab, client):
    machine, install, token = armed(lab)
    script = client.get("/boot/ipxe", {"mac": machine.pxe_nic.mac.upper().replace(":", "-")}).content.decode()
    assert script.startswith("#!ipxe") and f"/i/{token}/preseed.cfg" in script
    assert "kernel --name kernel tftp://${next-server}/images/debian-12/linux" in script
    for mac in ("52:54:00:aa:bb:cc", "not-a-mac", ""):
        body = client.get("/boot/ipxe", {"mac": mac}).content.decode()
        assert "No install armed, booting the local disk" in body and token not in body
    callbacks.installer_event(install.pk, "started")
    callbacks.installer_event(install.pk, "finished")
    lab.run_jobs()
    body = client.get("/boot/ipxe", {"mac": machine.pxe_nic.mac}).content.decode()
    assert "No install armed" in body  # the install ended: the machine boots its disk


@pytest.mark.parametrize(
    "profile, files",
    [
        ("debian-12-preseed", {"preseed.cfg": "d-i "}),
        ("rocky-9-kickstart", {"ks.cfg": "%pre"}),
        # cloud-init's order: meta-data (no secret, fetched without spending the boot credential), user-data.
        ("ubuntu-24.04-autoinstall", {"meta-data": "instance-id:", "user-data": "#cloud-config"}),
    ],
)
def test_answer_files_are_rendered_per_machine_by_token(lab, client, profile, files):
    machine, install, token = armed(lab, OSProfile.objects.get(name=profile))
    other = {"preseed.cfg", "ks.cfg", "user-data"} - set(files)
    for name in other:
        assert client.get(f"/i/{token}/{name}").status_code == 404
    bodies = {}
    for name, marker in files.items():
        response = client.get(f"/i/{token}/{name}")
        bodies[name] = body = response.content.decode()
        assert response.status_code == 200 and marker in body, body[:500]
    body = bodies[list(files)[-1]]
    assert machine.pxe_nic.mac in body  # the NIC is chosen by MAC
    assert f"/i/{callback_token_of(install)}/events/finished" in body
    assert f"/i/{token}/events/" not in body  # the boot credential opens no callback


def test_wrong_or_expired_tokens_get_404_and_nothing_is_written(lab, client):
    machine, install, token = armed(lab)
    events = Event.objects.count()
    assert client.get(f"/i/{'x' * 64}/preseed.cfg").status_code == 404
    assert client.post(f"/i/{'x' * 64}/events/finished").status_code == 404
    assert client.post(f"/i/{token}/events/nonsense").status_code == 404
    assert Event.objects.count() == events
    engine.cancel(install.pk, actor=Actor.system("test"))
    assert client.get(f"/i/{token}/preseed.cfg").status_code == 404


def test_installer_callbacks_move_the_install(lab, client):
    machine, install, _ = armed(lab)
    token = callback_token_of(install)
    assert client.post(f"/i/{token}/events/started").json() == {"ok": True, "outcome": "booted"}
    lab.run_jobs()
    response = client.post(
        f"/i/{token}/events/progress",
        data=json.dumps({"name": "subiquity/Install/install", "description": "curtin", "event_type": "start"}),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert Event.objects.filter(install=install, kind="progress", message="curtin").exists()
    assert client.get(f"/i/{token}/events/finished").json()["outcome"] == "finished"  # wget-only installers
    lab.run_jobs()
    assert Install.objects.get(pk=install.pk).state == InstallState.SUCCEEDED
    assert client.post(f"/i/{token}/events/finished").status_code == 404  # the token died with the install


def test_installer_failure_callback_fails_the_install(lab, client):
    machine, install, _ = armed(lab)
    client.post(f"/i/{callback_token_of(install)}/events/failed", {"message": "partman: no disk"})
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "InstallerFailed")
    assert "partman: no disk" in install.failure_message


def test_a_broken_template_fails_the_install_naming_the_line(lab, client):
    profile = OSProfile.objects.get(name="debian-12-preseed")
    profile.template = "d-i netcfg/get_hostname string {{ hostname }}\nd-i foo string {{ no_such_thing }}\n"
    profile.save()
    machine, install, token = armed(lab, profile)
    response = client.get(f"/i/{token}/preseed.cfg")
    assert response.status_code == 500
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "TemplateError")
    assert "line 2" in install.failure_message and "no_such_thing" in install.failure_message


# --- the agent API ----------------------------------------------------------------------------


def facts(mac, **extra):
    return {
        "agent_version": "1",
        "facts": {
            "cpus": 4,
            "memory_bytes": 8 << 30,
            "disks": [{"name": "vda", "path": "/dev/vda", "size_bytes": 10 << 30}],
            "nics": [{"name": "ens3", "mac": mac, "link": True}],
            "dmi": {"vendor": "QEMU"},
            **extra,
        },
    }


def post(client, path, body, token):
    return client.post(API + path, data=json.dumps(body), content_type="application/json", **bearer(token))


def register(client, machine, boot_token):
    """The agent's registration with the boot credential: the agent token its answer hands over."""
    response = post(client, "register", facts(machine.pxe_nic.mac), boot_token)
    assert response.status_code == 200, response.content
    return response.json()["token"]


def test_agent_api_runs_an_image_install(lab, client):
    machine, install, boot = armed(lab, lab.image_profile())
    response = post(client, "register", facts(machine.pxe_nic.mac.upper()), boot)
    assert response.status_code == 200, response.content
    answer = response.json()
    token = answer.pop("token")
    assert answer == {
        "install": install.pk,
        "hostname": machine.hostname,
        "heartbeat_s": 30,
        "progress_s": 1.0,
        "callback_token": callback_token_of(install),
    }
    assert token not in (boot, answer["callback_token"])
    assert post(client, "heartbeat", {}, token).json() == {"ok": True, "cancel": False}
    kinds = []
    while (task := client.get(API + "tasks/next", {"wait": 0}, **bearer(token)).json()["task"]) is not None:
        kinds.append(task["kind"])
        report = {"percent": 50, "message": "half", "log": ["a"]}
        assert via_route(f"tasks/{task['id']}/progress", report, token)[:2] == (200, {"ok": True, "progress_s": 1.0})
        assert post(client, f"tasks/{task['id']}/result", {"ok": True, "output": "done"}, token).status_code == 200
    assert kinds == [
        "wipe_disks",
        "write_image",
        "configure_network",
        "set_hostname",
        "ssh_keys",
        "first_boot_callback",
    ]
    lab.run_jobs()
    assert client.get(API + "tasks/next", **bearer(token)).json() == {
        "task": None,
        "retry_after_s": None,
        "finished": True,
    }
    assert Install.objects.get(pk=install.pk).state == InstallState.VERIFYING
    schema = client.get(API + "openapi.json").json()
    assert "/api/agent/v1/tasks/{task_id}/result" in schema["paths"]
    problem = {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {status: answer for status, answer in operation["responses"].items() if int(status) >= 400}
            assert {"400", "401"} <= errors.keys(), (method, path)
            assert all(answer["content"] == problem for answer in errors.values()), (method, path)


def test_agent_api_takes_world_wide_ids_uefi_and_retryable_failures(lab, client):
    machine, install, boot = armed(lab, lab.image_profile())
    body = facts(machine.pxe_nic.mac, efi=True)
    body["facts"]["disks"][0]["wwn"] = "naa.5000c500a1b2c3d4"
    token = post(client, "register", body, boot).json()["token"]
    machine.refresh_from_db()
    assert machine.facts["efi"] is True and machine.facts["disks"][0]["wwn"] == "naa.5000c500a1b2c3d4"
    assert machine.boot_mode == "uefi"  # learned: every later boot-device request asks for UEFI
    task = client.get(API + "tasks/next", {"wait": 0}, **bearer(token)).json()["task"]
    failed = {"ok": False, "reason": "DiskBusy", "message": "busy", "retryable": True}
    assert post(client, f"tasks/{task['id']}/result", failed, token).status_code == 200
    schemas = client.get(API + "openapi.json").json()["components"]["schemas"]
    assert schemas["ResultIn"]["properties"]["retryable"]["default"] is False
    # efi left out is "not known", which leaves the machine's boot mode as it is.
    assert "wwn" in schemas["Disk"]["properties"] and schemas["Facts"]["properties"]["efi"].get("default") is None


def test_agent_api_refuses_missing_wrong_and_foreign_tokens(lab, client):
    machine, install, token = armed(lab, lab.image_profile())
    other_machine, other, other_token = armed(lab, lab.image_profile())
    assert client.post(API + "heartbeat").status_code == 401
    assert client.post(API + "heartbeat").json() == problems.problem(401, "Unauthorized")
    assert post(client, "heartbeat", {}, "y" * 64).status_code == 401
    # Another install's token works only for that install: it cannot register this machine.
    response = post(client, "register", facts(machine.pxe_nic.mac), other_token)
    assert response.status_code == 403
    assert response["Content-Type"] == problems.MEDIA_TYPE and response.json()["reason"] == "WrongMachine"
    assert response.json()["detail"] == f"booted on a machine that is not {other_machine.hostname}"
    other.refresh_from_db()
    assert (other.state, other.failure_reason) == (InstallState.FAILED, "WrongMachine")
    assert post(client, "heartbeat", {}, other_token).status_code == 401  # its install has ended
    assert Install.objects.get(pk=install.pk).state == InstallState.BOOTING  # untouched


@pytest.mark.parametrize(
    "body, field",
    [
        ({"facts": {"nics": []}}, "facts.nics"),
        ({"facts": {"nics": [{"mac": "aa:bb:cc:dd:ee:zz"}]}}, "facts.nics.0.mac"),
        ({"facts": {"cpus": -1, "nics": [{"mac": "52:54:00:00:00:01"}]}}, "facts.cpus"),
        ({"agent_version": "1"}, "facts"),
        ("not json", ""),
    ],
)
def test_malformed_agent_bodies_get_400_naming_the_field_and_write_nothing(lab, client, body, field):
    machine, install, token = armed(lab, lab.image_profile())
    events, audit_count = Event.objects.count(), AuditEntry.objects.count()
    data = body if isinstance(body, str) else json.dumps(body)
    response = client.post(API + "register", data=data, content_type="application/json", **bearer(token))
    assert response.status_code == 400, response.content
    if field:
        assert response.json()["field"] == field
    assert Event.objects.count() == events
    assert AuditEntry.objects.count() == audit_count
    assert install.steps.get(kind=StepKind.WAIT_BOOT).state == "waiting"


def test_task_reports_for_unknown_or_stale_tasks_are_refused(lab, client):
    machine, install, boot = armed(lab, lab.image_profile())
    token = register(client, machine, boot)
    task = client.get(API + "tasks/next", **bearer(token)).json()["task"]
    assert post(client, "tasks/999999.1/result", {"ok": True}, token).status_code == 404
    assert via_route("tasks/garbage/progress", {}, token)[0] == 404
    step_id = task["id"].split(".")[0]
    assert post(client, f"tasks/{step_id}.7/result", {"ok": True}, token).status_code == 409
    bad = post(client, f"tasks/{task['id']}/result", {"ok": False, "reason": "not camel"}, token)
    assert bad.status_code == 400 and bad.json()["field"] == "reason"
    failed = post(
        client, f"tasks/{task['id']}/result", {"ok": False, "reason": "DiskNotFound", "message": "no vda"}, token
    )
    assert failed.status_code == 200
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "DiskNotFound")


def agent_with_task(lab, client):
    """A registered agent with a task in hand: its install, its agent token and the task id."""
    machine, install, boot = armed(lab, lab.image_profile())
    token = register(client, machine, boot)
    return install, token, client.get(API + "tasks/next", **bearer(token)).json()["task"]["id"]


def unchanged(install):
    """What a refused agent or installer request must leave as it was."""
    return (
        Event.objects.count(),
        AuditEntry.objects.count(),
        sorted(install.steps.values_list("pk", "state", "progress", "message")),
        Install.objects.filter(pk=install.pk).values_list("state", "failure_reason").get(),
    )


DEEP = "[" * 100000 + "]" * 100000


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("result", {"ok": False, "reason": "DiskNotFound", "message": "no\u0000vda"}, "message"),
        ("result", {"ok": True, "output": "\ud800 half a surrogate pair"}, "output"),
        ("result", DEEP, "body"),
        ("result", '{"ok": true, "message": "x", "nested": ' + DEEP + "}", "body"),
        ("result", '{"ok": true, "output": NaN}', "output"),
        ("result", "[true]", "body"),
        ("progress", {"message": "\u0000"}, "message"),
        ("progress", {"log": ["fine", "not\u0000fine"]}, "log.1"),
        ("progress", DEEP, "body"),
    ],
)
def test_agent_reports_that_cannot_be_stored_are_400_naming_the_field(lab, client, path, body, field):
    install, token, task_id = agent_with_task(lab, client)
    before = unchanged(install)
    data = body if isinstance(body, str) else json.dumps(body)
    if path == "progress":  # answered in front of Django (installs/ingest.py)
        status, answer, _ = via_route(f"tasks/{task_id}/{path}", data, token)
    else:
        url = API + f"tasks/{task_id}/{path}"
        response = client.post(url, data=data, content_type="application/json", **bearer(token))
        status, answer = response.status_code, response.json()
    assert status == 400, answer
    assert answer["field"] == field and answer["detail"].startswith(field)
    assert unchanged(install) == before


def test_agent_register_with_a_nul_in_its_facts_is_refused(lab, client):
    machine, install, token = armed(lab, lab.image_profile())
    before = unchanged(install)
    body = facts(machine.pxe_nic.mac, dmi={"vendor": "QEMU\x00"})
    response = post(client, "register", body, token)
    assert response.status_code == 400 and response.json()["field"] == "facts.dmi.vendor", response.content
    assert unchanged(install) == before


def test_agent_bodies_must_be_declared_as_json(lab, client):
    install, token, task_id = agent_with_task(lab, client)
    before = unchanged(install)
    for path, body in ((f"tasks/{task_id}/result", {"ok": True}), ("register", facts("52:54:00:00:00:01"))):
        response = client.post(API + path, data=json.dumps(body), content_type="text/plain", **bearer(token))
        assert response.status_code == 415 and response.json()["field"] == "body", response.content
    assert unchanged(install) == before


@pytest.mark.parametrize(
    "content_type, body, field",
    [
        ("application/json", '{"message": "curtin\\u0000"}', "message"),
        ("application/json", '{"name": "x", "result": {"\\u0000": 1}}', "result"),
        ("application/json", '{"description": "x", "size": 1e400}', "size"),
        ("application/json", "[" * 30000 + "]" * 30000, "body"),
        ("application/json", '{"a": ' + "[" * 200 + "]" * 200 + "}", "body"),
        ("application/json", "[1, 2]", "body"),
        ("application/x-www-form-urlencoded", "message=curtin%00", "message"),
        ("application/x-www-form-urlencoded", "step=%00", "step"),
    ],
)
def test_installer_callbacks_refuse_what_cannot_be_stored(lab, client, content_type, body, field):
    machine, install, _ = armed(lab)
    token = callback_token_of(install)
    before = unchanged(install)
    response = client.post(f"/i/{token}/events/progress", data=body, content_type=content_type)
    assert response.status_code == 400 and field in response.content.decode(), response.content[:300]
    assert client.get(f"/i/{token}/events/progress?message=%00").status_code == 400
    assert unchanged(install) == before


def test_render_command_previews_what_the_machine_would_receive(lab, capsys):
    machine = lab.machine()
    call_command("render", machine.hostname, "--profile", "rocky-9-kickstart", "--file", "kickstart")
    out = capsys.readouterr().out
    assert "/i/PREVIEW-CALLBACK-TOKEN-not-real/events/finished" in out and machine.pxe_nic.mac in out
    call_command("render", machine.hostname, "--profile", "rocky-9-kickstart", "--file", "pxelinux")
    assert f"inst.ks.device={machine.pxe_nic.mac}" in capsys.readouterr().out
    with pytest.raises(CommandError, match="^A kickstart profile has no preseed file"):
        call_command("render", machine.hostname, "--profile", "rocky-9-kickstart", "--file", "preseed")
    with pytest.raises(CommandError, match="^An image profile has no kickstart file"):
        call_command("render", machine.hostname, "--profile", lab.image_profile().name, "--file", "kickstart")
