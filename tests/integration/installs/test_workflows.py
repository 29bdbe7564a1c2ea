"""Workflows saved in the library and run by the real engine on PostgreSQL, Redis and RQ: parallel stages handed
to the agent, retries and what a failure does, protection, disk hints, templates, per-task timeouts, and the plan
freezing what it runs."""

import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.models import AuditEntry
from audit.service import Actor
from installs import callbacks, library
from installs import workflow as wf
from installs.models import Alert, Event, EventKind, Install, InstallState, Script, StepState
from installs.models import Workflow as WorkflowRow
from installs.sweeper import sweep
from inventory.services import set_protected

ADMIN = Actor.system("admin")


def document(name: str, stages: str, *, storage: str = "") -> str:
    """An image workflow: boot the agent, ``stages``, then finish and verify as the stock one does."""
    return (
        f"name: {name}\nmethod: image\n{storage}stages:\n"
        "  - name: boot\n    tasks: [check_bmc, write_boot_config, set_boot_pxe, power_cycle, wait_boot]\n"
        f"{stages}"
        "  - name: finish\n    tasks: [remove_boot_config, set_boot_disk, reboot]\n"
        "  - name: verify\n    tasks: [verify, verify_ssh]\n"
    )


WRITE = "  - name: write\n    tasks: [write_image, first_boot_callback]\n"


def facts_for(machine) -> dict:
    return {
        "cpus": 16,
        "nics": [{"mac": machine.pxe_nic.mac, "link": True}],
        "disks": [
            {"name": "vda", "path": "/dev/vda", "size_bytes": 20 * 2**30, "model": "QEMU HARDDISK", "serial": "A1",
             "rotational": False},
            {"name": "vdb", "path": "/dev/vdb", "size_bytes": 20 * 2**30, "model": "QEMU HARDDISK", "serial": "B2",
             "rotational": False},
        ],
    }  # fmt: skip


def profile_with(lab, text: str):
    """The lab's image profile running ``text``, saved through the library as an admin would."""
    row, created = library.save_workflow(text, ADMIN)
    assert created
    profile = lab.image_profile()
    profile.workflow = row.name
    profile.full_clean()
    profile.save()
    return profile


def booted(lab, text: str):
    """A machine installing ``text``, its agent registered: the install waits for the agent's tasks."""
    machine = lab.machine()
    install = lab.install([machine], profile_with(lab, text))
    lab.run_jobs()
    callbacks.agent_register(install.pk, facts_for(machine))
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.INSTALLING
    return machine, install


def finish(lab, install) -> None:
    """Run every agent task the install hands out, successfully, then its first-boot callback."""
    while task := callbacks.agent_next_task(install.pk)["task"]:
        assert callbacks.agent_result(install.pk, task["id"], True, "", "", "") == "ok"
        lab.run_jobs()
    lab.run_jobs()
    callbacks.installer_event(install.pk, "finished", "first boot")
    lab.run_jobs()
    install.refresh_from_db()


def step_of(install, kind: str, n: int = 0):
    return install.steps.filter(task=kind).order_by("order")[n]


# --- parallel stages ---------------------------------------------------------------------------------------


def test_a_parallel_stage_hands_out_each_task_before_any_reports_and_waits_for_all(lab):
    stage = (
        "  - name: wipe\n    run: parallel\n    tasks:\n"
        "      - {task: wipe_disks, params: {disks: /dev/vda}}\n"
        "      - {task: wipe_disks, params: {disks: {serial: B2}}}\n"
    )
    machine, install = booted(lab, document("wipe-both", stage + WRITE))
    first = callbacks.agent_next_task(install.pk)["task"]
    second = callbacks.agent_next_task(install.pk)["task"]
    assert (first["kind"], first["params"]) == ("wipe_disks", {"disks": ["/dev/vda"]})
    assert (second["kind"], second["params"]) == ("wipe_disks", {"disks": ["/dev/vdb"]})  # the hint, resolved
    assert first["id"] != second["id"]
    both = {step_of(install, "wipe_disks", 0), step_of(install, "wipe_disks", 1)}
    assert {s.state for s in both} == {StepState.DISPATCHED}
    # Both are out: asking again hands one of them out again, never the next stage's task.
    for _ in range(3):
        assert callbacks.agent_next_task(install.pk)["task"]["id"] in (first["id"], second["id"])

    assert callbacks.agent_result(install.pk, second["id"], True, "", "wiped vdb", "") == "ok"
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.INSTALLING
    assert step_of(install, "write_image").state == StepState.PENDING
    assert callbacks.agent_next_task(install.pk)["task"]["id"] == first["id"]

    assert callbacks.agent_result(install.pk, first["id"], True, "", "wiped vda", "") == "ok"
    lab.run_jobs()
    write = callbacks.agent_next_task(install.pk)["task"]
    assert write["kind"] == "write_image"
    # A serial stage hands out its next task only when the one before is done.
    assert callbacks.agent_next_task(install.pk)["task"]["id"] == write["id"]
    assert step_of(install, "first_boot_callback").state == StepState.PENDING
    finish(lab, install)
    assert install.state == InstallState.SUCCEEDED, install.failure_message
    assert [s.stage_name for s in install.steps.filter(parallel=True)] == ["wipe", "wipe"]


# --- retries and failures ----------------------------------------------------------------------------------


RETRIED_WRITE = "  - name: write\n    tasks:\n      - {task: write_image, retries: 2}\n      - first_boot_callback\n"


def test_a_retryable_agent_failure_is_handed_out_again_as_a_new_task_after_backoff(lab, settings):
    settings.STEP_RETRY_BASE_S = 0.3  # long enough to ask inside it, short enough to wait out
    settings.STEP_RETRY_MAX_S = 0.3
    machine, install = booted(lab, document("retry-write", "  - name: wipe\n    tasks: [wipe_disks]\n" + RETRIED_WRITE))
    assert callbacks.agent_result(install.pk, callbacks.agent_next_task(install.pk)["task"]["id"], True, "", "", "")
    lab.run_jobs(scheduled=False)
    write = step_of(install, "write_image")
    assert write.policy["retries"] == 2
    ids = []
    for attempt in (1, 2):
        task = callbacks.agent_next_task(install.pk)["task"]
        assert task["kind"] == "write_image"
        ids.append(task["id"])
        outcome = callbacks.agent_result(install.pk, task["id"], False, "ImageDownloadFailed", "reset by peer", "",
                                         retryable=True)  # fmt: skip
        assert outcome == "retry"
        write.refresh_from_db()
        assert (write.state, write.attempts) == (StepState.PENDING, attempt)
        answer = callbacks.agent_next_task(install.pk)
        assert answer["task"] is None and 0 < answer["retry_after_s"] <= 30  # the backoff is not over
        with pytest.raises(callbacks.NotCurrentTask):  # a late answer to the failed attempt
            callbacks.agent_result(install.pk, task["id"], True, "", "", "")
        time.sleep(0.4)
    task = callbacks.agent_next_task(install.pk)["task"]
    ids.append(task["id"])
    assert ids == [f"{write.pk}.1", f"{write.pk}.2", f"{write.pk}.3"]
    assert callbacks.agent_result(install.pk, task["id"], False, "ImageDownloadFailed", "reset by peer", "",
                                  retryable=True) == "failed"  # fmt: skip
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "ImageDownloadFailed")
    assert install.failure_message.endswith("Gave up after 3 attempts.")
    retried = Event.objects.filter(install=install, step=write, message__contains="failed (The agent's write image")
    assert [e.message.split(" failed (")[0] for e in retried.order_by("id")] == [
        "Agent: write image: attempt 1 of 3",
        "Agent: write image: attempt 2 of 3",
    ]


def test_a_non_retryable_agent_failure_fails_at_once_whatever_the_retries(lab):
    machine, install = booted(lab, document("no-retry", RETRIED_WRITE))
    task = callbacks.agent_next_task(install.pk)["task"]
    outcome = callbacks.agent_result(install.pk, task["id"], False, "ImageChecksumMismatch", "sha256 differs", "")
    assert outcome == "failed"
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "ImageChecksumMismatch")
    assert "Gave up" not in install.failure_message
    assert step_of(install, "write_image").attempts == 1
    assert Alert.objects.get(install=install).reason == "ImageChecksumMismatch"


def test_a_script_that_fails_with_on_failure_continue_is_marked_and_the_install_succeeds(lab):
    library.save_script("collect-logs", "#!/bin/sh\nexit 3\n", ADMIN)
    stage = (
        "  - name: extras\n    tasks:\n"
        "      - {task: run_script, on_failure: continue, params: {script: collect-logs}}\n"
    )
    machine, install = booted(lab, document("best-effort", WRITE.replace(", first_boot_callback]", "]") + stage
                                            + "  - name: callback\n    tasks: [first_boot_callback]\n"))  # fmt: skip
    write = callbacks.agent_next_task(install.pk)["task"]
    callbacks.agent_result(install.pk, write["id"], True, "", "", "")
    lab.run_jobs()
    script = callbacks.agent_next_task(install.pk)["task"]
    assert script["kind"] == "run_script" and script["params"]["script"] == "#!/bin/sh\nexit 3\n"
    outcome = callbacks.agent_result(install.pk, script["id"], False, "ScriptFailed", "exit status 3", "boom")
    assert outcome == "continued"
    lab.run_jobs()
    assert callbacks.agent_next_task(install.pk)["task"]["kind"] == "first_boot_callback"
    finish(lab, install)
    assert install.state == InstallState.SUCCEEDED
    failed = step_of(install, "run_script")
    assert failed.state == StepState.FAILED and failed.result["reason"] == "ScriptFailed"
    assert install.failure_message.startswith("Succeeded, but 1 task(s) failed and the workflow went on: ")
    alert = Event.objects.get(install=install, kind=EventKind.ALERT, step=failed)
    assert alert.data == {"reason": "ScriptFailed", "continued": True} and "goes on" in alert.message
    assert not Alert.objects.filter(install=install).exists()  # nobody is paged for a failure the workflow allows


# --- what the agent is refused or cannot be given ----------------------------------------------------------


def test_a_destructive_task_on_a_machine_protected_mid_install_is_refused(lab):
    machine, install = booted(lab, document("protect-me", WRITE))
    set_protected(machine.pk, True, actor=ADMIN, reason="holds the only copy of the ledger")
    assert callbacks.agent_next_task(install.pk) == {"task": None, "finished": True}
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "MachineProtected")
    assert f"{machine.hostname} was marked protected during the install" in install.failure_message
    write = step_of(install, "write_image")
    assert (write.state, write.attempts) == (StepState.FAILED, 0)  # never handed to the agent


def test_a_disk_hint_that_matches_nothing_fails_listing_the_machines_disks(lab):
    stage = "  - name: wipe\n    tasks:\n      - {task: wipe_disks, params: {disks: {model: MICRON}}}\n"
    machine, install = booted(lab, document("micron-only", stage + WRITE))
    assert callbacks.agent_next_task(install.pk) == {"task": None, "finished": True}
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "DiskHintUnmatched")
    assert install.failure_message == (
        "wipe_disks.disks: no disk matches {model: 'MICRON'}; the machine has: "
        "/dev/vda (20 GiB, QEMU HARDDISK, serial A1, solid-state); /dev/vdb (20 GiB, QEMU HARDDISK, serial B2, "
        "solid-state)"
    )
    assert step_of(install, "wipe_disks").attempts == 0


def test_templates_in_params_render_from_the_machine_and_its_facts(lab):
    stage = (
        "  - name: wipe\n    tasks: [{task: wipe_disks, params: {disks: '{{ facts.disks[1].path }}'}}]\n"
        "  - name: write\n    tasks:\n      - write_image\n"
        "      - {task: set_hostname, params: {hostname: '{{ machine.hostname }}-{{ facts.cpus }}cpu'}}\n"
        "      - first_boot_callback\n"
    )
    machine, install = booted(lab, document("templated", stage))
    wipe = callbacks.agent_next_task(install.pk)["task"]
    assert wipe["params"] == {"disks": ["/dev/vdb"]}
    callbacks.agent_result(install.pk, wipe["id"], True, "", "", "")
    lab.run_jobs()
    write = callbacks.agent_next_task(install.pk)["task"]
    callbacks.agent_result(install.pk, write["id"], True, "", "", "")
    lab.run_jobs()
    name = callbacks.agent_next_task(install.pk)["task"]
    assert name["kind"] == "set_hostname" and name["params"] == {"hostname": f"{machine.hostname}-16cpu"}
    # What was handed out is what the step records, templates and all resolved.
    assert step_of(install, "set_hostname").params == name["params"]


def test_a_task_timeout_is_its_own_deadline_and_the_sweeper_ends_it(lab, settings):
    stage = "  - name: wipe\n    tasks:\n      - {task: wipe_disks, timeout: 1}\n"
    machine, install = booted(lab, document("quick-wipe", stage + WRITE))
    callbacks.agent_next_task(install.pk)
    wipe = step_of(install, "wipe_disks")
    assert wipe.state == StepState.DISPATCHED
    assert 0.9 <= (wipe.deadline_at - wipe.started_at).total_seconds() <= 1.1
    assert sweep()["expired"] == 0
    time.sleep(1.2)
    callbacks.agent_next_task(install.pk)  # the agent is alive and asking: only the task's own deadline ends it
    assert sweep()["expired"] == 1
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "AgentTaskTimeout")
    assert f"The agent's wipe disks on {machine.hostname} did not finish" in install.failure_message
    assert settings.INSTALL_AGENT_TASK_DEADLINE_S > 60  # without its timeout, the task would have had far longer


# --- the plan freezes what it runs -------------------------------------------------------------------------


def test_the_plan_freezes_the_workflow_and_its_scripts(lab):
    library.save_script("tune", "#!/bin/sh\necho v1\n", ADMIN)
    stage = "  - name: tune\n    tasks:\n      - {task: run_script, params: {script: tune}}\n"
    text = document("tuned", WRITE.replace(", first_boot_callback]", "]") + stage
                    + "  - name: callback\n    tasks: [first_boot_callback]\n")  # fmt: skip
    machine = lab.machine()
    install = lab.install([machine], profile_with(lab, text))
    # Both edited after the install was requested.
    assert library.save_script("tune", "#!/bin/sh\necho v2\n", ADMIN)[0].version == 2
    assert library.save_workflow(text.replace("- name: tune\n", "- name: tune-it\n"), ADMIN)[0].version == 2
    lab.run_jobs()
    callbacks.agent_register(install.pk, facts_for(machine))
    lab.run_jobs()
    install.refresh_from_db()
    assert install.plan.workflow.version == 1
    assert [s.name for s in install.plan.workflow.stages] == ["boot", "write", "tune", "callback", "finish", "verify"]
    write = callbacks.agent_next_task(install.pk)["task"]
    callbacks.agent_result(install.pk, write["id"], True, "", "", "")
    lab.run_jobs()
    script = callbacks.agent_next_task(install.pk)["task"]
    assert script["kind"] == "run_script"
    assert script["params"] == {"script": "#!/bin/sh\necho v1\n", "name": "tune@1", "timeout_s": 600}
    assert Script.objects.filter(name="tune").count() == 2
    # A new install takes the latest of both.
    later = library.plan_for(machine, install.profile)
    assert later.workflow.version == 2
    tune = next(t for _, _, t in later.workflow.tasks() if t.task == "run_script")
    assert tune.params["script"] == "tune@2" and tune.params["body"] == "#!/bin/sh\necho v2\n"


def test_saving_a_changed_workflow_makes_a_new_version_and_the_same_text_keeps_it(lab):
    text = document("versioned", WRITE)
    row, created = library.save_workflow(text, ADMIN)
    assert (row.version, created) == (1, True)
    again, created = library.save_workflow(text, ADMIN)
    assert (again.pk, again.version, created) == (row.pk, 1, False)
    changed, created = library.save_workflow(text.replace("tasks: [verify, verify_ssh]", "tasks: [verify]"), ADMIN)
    assert (changed.version, created) == (2, True)
    assert WorkflowRow.latest("versioned") == changed
    assert list(
        AuditEntry.objects.filter(action="workflow.save").order_by("id").values_list("details__version", flat=True)
    ) == [1, 2]
    # An invalid document is refused and stores nothing; a stock workflow's name cannot be taken.
    with pytest.raises(wf.WorkflowInvalid):
        library.save_workflow(text.replace("wait_boot", "wait_for_boot"), ADMIN)
    with pytest.raises(wf.WorkflowInvalid, match="stock-image is the stock workflow's name"):
        library.save_workflow(text.replace("name: versioned", "name: stock-image"), ADMIN)
    assert WorkflowRow.objects.filter(name="versioned").count() == 2
    assert not WorkflowRow.objects.filter(name="stock-image").exists()


def test_a_profile_naming_an_unknown_workflow_or_one_for_another_method_is_refused(lab):
    library.save_workflow(document("image-only", WRITE), ADMIN)
    preseed = lab.profile()
    preseed.workflow = "no-such-flow"
    with pytest.raises(ValidationError) as exc:
        preseed.full_clean()
    assert exc.value.message_dict["workflow"] == [
        f"profile {preseed.name} names the workflow 'no-such-flow': there is none"
    ]
    preseed.workflow = "image-only"
    with pytest.raises(ValidationError) as exc:
        preseed.full_clean()
    assert exc.value.message_dict["workflow"] == [
        f"workflow image-only serves image installs; {preseed.name} is preseed"
    ]
    preseed.workflow = "stock-installer"
    preseed.full_clean()
    image = lab.image_profile()
    image.workflow = "image-only"
    image.full_clean()


def test_a_profile_naming_the_stock_workflow_of_another_method_is_refused(lab):
    preseed = lab.profile()
    preseed.workflow = "stock-image"
    with pytest.raises(ValidationError) as exc:
        preseed.full_clean()
    assert exc.value.message_dict["workflow"] == [
        f"workflow stock-image serves image installs; {preseed.name} is preseed"
    ]
    image = lab.image_profile()
    image.workflow = "stock-installer"
    with pytest.raises(ValidationError, match="serves preseed, kickstart, autoinstall installs"):
        image.full_clean()
    image.workflow = "stock-image"
    image.full_clean()
    assert library.for_profile(image) == wf.stock("image")


def test_a_silent_agent_is_noticed_while_a_parallel_sibling_waits_out_its_backoff(lab, settings):
    settings.STEP_RETRY_BASE_S = 600  # the first wipe's retry is far off
    stage = (
        "  - name: wipe\n    run: parallel\n    tasks:\n"
        "      - {task: wipe_disks, retries: 1, params: {disks: /dev/vda}}\n"
        "      - {task: wipe_disks, params: {disks: /dev/vdb}}\n"
    )
    machine, install = booted(lab, document("wipe-silent", stage + WRITE))
    first = callbacks.agent_next_task(install.pk)["task"]
    callbacks.agent_next_task(install.pk)
    assert callbacks.agent_result(install.pk, first["id"], False, "WipeFailed", "busy", "", retryable=True) == "retry"
    assert step_of(install, "wipe_disks", 0).state == StepState.PENDING
    assert step_of(install, "wipe_disks", 1).state == StepState.DISPATCHED
    silent_since = timezone.now() - timedelta(seconds=settings.AGENT_SILENCE_S + 5)
    Install.objects.filter(pk=install.pk).update(agent_seen_at=silent_since)
    assert sweep()["silent_agents"] == 1
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "AgentLost")
    assert "while running wipe disks" in install.failure_message


def test_an_agent_silent_while_holding_a_task_fails_the_install_and_one_heard_from_does_not(lab, settings):
    machine, install = booted(lab, document("plain", WRITE))
    callbacks.agent_next_task(install.pk)
    assert sweep()["silent_agents"] == 0  # just heard from
    Install.objects.filter(pk=install.pk).update(
        agent_seen_at=timezone.now() - timedelta(seconds=settings.AGENT_SILENCE_S + 5)
    )
    assert sweep()["silent_agents"] == 1
    install.refresh_from_db()
    assert (install.state, install.failure_reason) == (InstallState.FAILED, "AgentLost")
    assert step_of(install, "write_image").state == StepState.FAILED


def test_a_retried_script_is_handed_out_again_with_its_body(lab):
    library.save_script("survey", "#!/bin/sh\nlsblk\n", ADMIN, safe_to_repeat=True, timeout_s=120)
    stage = "  - name: survey\n    tasks:\n      - {task: run_script, retries: 1, params: {script: survey}}\n"
    machine, install = booted(lab, document("survey-twice", stage + WRITE))
    first = callbacks.agent_next_task(install.pk)["task"]
    expected = {"script": "#!/bin/sh\nlsblk\n", "name": "survey@1", "timeout_s": 120}
    assert first["params"] == expected
    assert callbacks.agent_result(install.pk, first["id"], False, "ScriptFailed", "", "", retryable=True) == "retry"
    time.sleep(0.1)  # the conftest's backoff is a few hundredths of a second
    again = callbacks.agent_next_task(install.pk)["task"]
    assert again["id"] != first["id"] and again["params"] == expected
