"""Workflow documents: the checker's every refusal with its line, the stock workflows, includes, scripts before
and after stages, and templates through the real bounded renderer. No database: the library is a stub."""

import pytest

from installs import taskkinds
from installs import workflow as wf
from inventory.models import InstallMethod

BOOT = """\
name: lab
method: image
stages:
  - name: boot
    tasks:
      - check_bmc
      - write_boot_config
      - set_boot_pxe
      - power_cycle
      - wait_boot
"""

FINISH = """\
  - name: finish
    tasks:
      - remove_boot_config
      - set_boot_disk
      - reboot
  - name: verify
    tasks:
      - verify
      - verify_ssh
"""

INSTALL = """\
  - name: install
    tasks:
      - wipe_disks
      - write_image
      - first_boot_callback
"""


class StubLibrary:
    def __init__(self, scripts=(), workflows=None):
        self.scripts = {s["name"]: s for s in scripts}
        self.workflows = workflows or {}

    def script(self, ref):
        return self.scripts.get(ref.partition("@")[0])

    def workflow_text(self, name):
        return self.workflows.get(name)


def script(name, *, safe=False):
    return {"name": name, "version": 3, "body": "#!/bin/sh\ntrue\n", "timeout_s": 60, "safe_to_repeat": safe}


LIBRARY = StubLibrary([script("tune"), script("collect", safe=True)])


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th line containing ``needle``."""
    found = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    return found[occurrence - 1]


def problems(text: str, library=LIBRARY) -> list[str]:
    with pytest.raises(wf.WorkflowInvalid) as exc:
        wf.check(text, library)
    return exc.value.messages


def with_stage(stage: str) -> str:
    return BOOT + stage + FINISH


# --- the stock workflows and a valid document --------------------------------------------------------------


@pytest.mark.parametrize("method", InstallMethod.values)
def test_the_stock_workflows_check_and_serve_their_method(method):
    flow = wf.stock(method)
    assert flow.name == wf.stock_names()[method]
    assert method in flow.methods
    assert all(t.timeout_s is None and t.on_failure == "fail" for _, _, t in flow.tasks())
    # The same document through check() again, as the library does for includes.
    assert wf.check(wf.stock_text(method)) == flow


def test_the_stock_image_workflow_is_the_order_installs_always_had():
    tasks = [t.task for _, _, t in wf.stock(InstallMethod.IMAGE).tasks()]
    assert tasks == [
        "check_bmc", "write_boot_config", "set_boot_pxe", "power_cycle", "wait_boot", "wipe_disks", "write_image",
        "configure_network", "set_hostname", "ssh_keys", "first_boot_callback", "remove_boot_config",
        "set_boot_disk", "reboot", "verify", "verify_ssh",
    ]  # fmt: skip
    write = next(t for _, _, t in wf.stock(InstallMethod.IMAGE).tasks() if t.task == "write_image")
    assert write.retries == 2  # the kind's default: a download can fail half way


def test_a_valid_document_keeps_every_task_setting_and_its_line():
    text = with_stage(
        """\
  - name: install
    tasks:
      - wipe_disks
      - task: write_image
        name: the golden image
        timeout: 30m
        retries: 3
        backoff: 10s
        params: {compression: zstd}
      - task: run_script
        on_failure: continue
        params: {script: tune}
      - first_boot_callback
"""
    )
    flow = wf.check(text, LIBRARY)
    install = flow.stages[1]
    write, tune = install.tasks[1], install.tasks[2]
    assert (write.name, write.timeout_s, write.retries, write.backoff_s) == ("the golden image", 1800, 3, 10.0)
    assert write.params == {"compression": "zstd"} and write.line == line_of(text, "task: write_image")
    assert (tune.on_failure, tune.retries, tune.name) == ("continue", 0, "Agent: run script")
    # The frozen form survives the plan's JSON.
    assert wf.Workflow.from_json(flow.to_json()) == flow


# --- every refusal, with its line --------------------------------------------------------------------------


def test_an_unknown_task_names_its_line_and_the_closest_kind():
    text = with_stage(
        "  - name: install\n    tasks:\n      - wipe_disk\n      - write_image\n      - first_boot_callback\n"
    )
    assert problems(text) == [
        f"line {line_of(text, 'wipe_disk')}: unknown task 'wipe_disk' (did you mean wipe_disks?); "
        "see the task reference"
    ]


def test_an_unknown_task_far_from_any_kind_has_no_suggestion():
    text = with_stage(INSTALL.replace("wipe_disks", "frobnicate"))
    assert problems(text) == [f"line {line_of(text, 'frobnicate')}: unknown task 'frobnicate'; see the task reference"]


def test_an_unknown_param_lists_the_kinds_params():
    text = with_stage(INSTALL.replace("- write_image", "- task: write_image\n        params:\n          colour: red"))
    assert problems(text) == [
        f"line {line_of(text, 'colour')}: write_image has no parameter 'colour' "
        "(it has: disk, url, sha256, compression)"
    ]


@pytest.mark.parametrize(
    "task, params, message",
    [
        ("write_image", "compression: lz4", "write_image.compression: 'lz4' is not one of auto, raw, gzip, xz, zstd, "
         "qcow2"),
        ("run_script", "script: tune\n          timeout: soon", "run_script.timeout: 'soon' is not an integer"),
        ("run_script", "script: tune\n          timeout: -5", "run_script.timeout: -5 is not an integer"),
        ("set_hostname", "hostname: [a, b]", "set_hostname.hostname: ['a', 'b'] is not a string"),
        ("write_image", "disk: [/dev/sda, /dev/sdb]", "write_image.disk: one disk (a path or a hint), not a list"),
        ("write_image", "disk: sda", "write_image.disk: 'sda' is neither a /dev path nor a hint"),
        ("run_script", "script: missing", "run_script.script: no script 'missing' in the script library"),
    ],
)  # fmt: skip
def test_a_param_of_the_wrong_type_or_choice_names_its_line(task, params, message):
    text = with_stage(
        f"  - name: install\n    tasks:\n      - wipe_disks\n      - write_image\n"
        f"      - task: {task}\n        params:\n          {params}\n      - first_boot_callback\n"
    )
    bad_key = params.splitlines()[-1].split(":")[0].strip()
    assert problems(text) == [f"line {line_of(text, bad_key + ':')}: {message}"]


def test_a_missing_required_param_is_named_with_its_doc():
    text = with_stage(INSTALL.replace("- wipe_disks", "- wipe_disks\n      - task: partition\n        params: {disk: "
                                      "/dev/sda}"))  # fmt: skip
    assert problems(text) == [
        f"line {line_of(text, 'task: partition')}: partition needs the parameter 'layout': the partition layout's name"
    ]


def test_a_storage_layout_gives_the_raid_params_it_leaves_out():
    install = (
        "  - name: install\n    tasks:\n      - wipe_disks\n      - raid\n      - task: write_image\n"
        "        params: {disk: /dev/md0}\n      - bootloader\n      - first_boot_callback\n"
    )
    text = BOOT.replace("stages:", "storage:\n  layout: raid1\n  disks: {count: 2}\nstages:") + install + FINISH
    flow = wf.check(text)
    assert flow.storage == wf.Storage(layout="raid1", disks={"count": 2})
    # Without the layout, raid and bootloader must say their level and members.
    bare = with_stage(install)
    raid, bootloader = line_of(bare, "- raid"), line_of(bare, "- bootloader")
    assert problems(bare) == [
        f"line {raid}: raid needs the parameter 'level': RAID level",
        f"line {raid}: raid needs the parameter 'members': {taskkinds._DISKS}",
        f"line {bootloader}: bootloader needs the parameter 'members': {taskkinds._DISKS}",
    ]


@pytest.mark.parametrize(
    "hint, message",
    [
        ("{colour: red}", "wipe_disks.disks: unknown key 'colour'; a hint has name, size, model, vendor, serial, wwn, "
         "rotational, all, count"),
        ("{size: huge}", "wipe_disks.disks.size: 'huge' is not a size such as 500GiB, >=100GB or <2TiB"),
        ("{rotational: maybe}", "wipe_disks.disks.rotational: true or false"),
        ("{count: 0}", "wipe_disks.disks.count: a whole number of at least 1"),
        ("{}", "wipe_disks.disks: a disk hint is a mapping such as {rotational: false, count: 2}"),
    ],
)  # fmt: skip
def test_a_bad_disk_hint_names_its_key_and_line(hint, message):
    text = with_stage(INSTALL.replace("- wipe_disks", f"- task: wipe_disks\n        params:\n          disks: {hint}"))
    assert problems(text) == [f"line {line_of(text, 'disks: {')}: {message}"]


def test_an_image_onto_the_array_before_the_raid_task_names_the_raid_that_comes_too_late():
    text = with_stage(
        "  - name: install\n    tasks:\n      - task: write_image\n        params: {disk: /dev/md0}\n"
        "      - task: raid\n        params: {level: '1', members: [/dev/sda, /dev/sdb]}\n      - first_boot_callback\n"
    )
    write, raid = line_of(text, "task: write_image"), line_of(text, "task: raid")
    assert problems(text) == [
        f"line {write}: write_image needs a RAID array: a raid task before it (the raid at line {raid} comes too late)"
    ]


def test_the_network_config_before_the_image_names_the_write_image_that_comes_too_late():
    text = with_stage("  - name: install\n    tasks:\n      - configure_network\n      - write_image\n"
                      "      - first_boot_callback\n")  # fmt: skip
    assert problems(text) == [
        f"line {line_of(text, 'configure_network')}: configure_network needs an image written: a write_image task "
        f"before it (the write_image at line {line_of(text, '- write_image')} comes too late)"
    ]


def test_a_need_met_only_inside_the_same_parallel_stage_is_not_met():
    text = with_stage("  - name: install\n    run: parallel\n    tasks:\n      - write_image\n      - set_hostname\n"
                      "  - name: last\n    tasks:\n      - first_boot_callback\n")  # fmt: skip
    assert problems(text) == [
        f"line {line_of(text, 'set_hostname')}: set_hostname needs an image written: a write_image task before it"
    ]


def test_a_wait_in_a_parallel_stage_is_refused():
    text = BOOT + INSTALL + FINISH.replace("  - name: verify\n", "  - name: verify\n    run: parallel\n")
    assert problems(text) == [
        f"line {line_of(text, '- verify')}: verify waits for the machine: it needs a serial stage"
    ]


def test_phases_going_backwards_name_the_task_they_belong_before():
    text = with_stage(INSTALL.replace("- first_boot_callback", "- first_boot_callback\n      - check_bmc"))
    assert problems(text) == [
        f"line {line_of(text, 'check_bmc', 2)}: check_bmc belongs before the task at line "
        f"{line_of(text, 'wipe_disks')}: phases only go forward"
    ]


def test_a_parallel_stage_may_not_mix_phases():
    text = (
        BOOT
        + INSTALL.replace("      - first_boot_callback\n", "")
        + ("  - name: mixed\n    run: parallel\n    tasks:\n      - first_boot_callback\n      - remove_boot_config\n")
        + FINISH.replace("      - remove_boot_config\n", "")
    )
    assert problems(text) == [
        f"line {line_of(text, 'name: mixed')}: stage 'mixed' runs tasks of different install phases in parallel: "
        "split it"
    ]


def test_retries_on_a_script_not_safe_to_repeat_are_refused_and_allowed_on_one_that_is():
    stage = "  - name: tune\n    tasks:\n      - task: run_script\n        retries: 2\n        params: {{script: {}}}\n"
    text = with_stage(INSTALL + stage.format("tune"))
    assert problems(text) == [
        f"line {line_of(text, 'retries: 2')}: run_script destroys data and the script does not declare itself safe "
        "to repeat: retries must be 0"
    ]
    flow = wf.check(with_stage(INSTALL + stage.format("collect")), LIBRARY)
    assert flow.stages[2].tasks[0].retries == 2


def test_retries_out_of_range_and_bad_durations_are_refused():
    text = with_stage(INSTALL.replace("- write_image", "- task: write_image\n        retries: 11\n        timeout: 8d"
                                      "\n        backoff: later\n        on_failure: shrug"))  # fmt: skip
    assert problems(text) == [
        f"line {line_of(text, 'retries: 11')}: retries: a whole number from 0 to 10",
        f'line {line_of(text, "timeout: 8d")}: timeout: seconds, or "30m", "2h": from 1 s to 7 days',
        f"line {line_of(text, 'backoff: later')}: backoff: seconds before the first retry (doubling after)",
        f"line {line_of(text, 'on_failure: shrug')}: on_failure: fail (the install fails) or continue (marked, "
        "goes on)",
    ]


def test_a_wait_cannot_be_continued_past():
    text = BOOT.replace("      - wait_boot", "      - task: wait_boot\n        on_failure: continue") + INSTALL + FINISH
    assert problems(text) == [
        f"line {line_of(text, 'on_failure')}: wait_boot waits for the machine: the install cannot go on without it"
    ]


def test_an_include_cycle_names_the_chain():
    a = "name: a\nmethod: image\nstages:\n  - include: b\n"
    b = "name: b\nmethod: image\nstages:\n  - name: first\n    tasks: [check_bmc]\n  - include: a\n"
    library = StubLibrary(workflows={"a": a, "b": b})
    assert problems(a, library) == ["line 4: include b: line 6: include: a cycle: a → b → a"]
    itself = "name: a\nmethod: image\nstages:\n  - name: first\n    tasks: [check_bmc]\n  - include: a\n"
    assert problems(itself, StubLibrary(workflows={"a": itself})) == ["line 6: include: a cycle: a → a"]
    assert problems(a, StubLibrary()) == ["line 4: include: no workflow named 'b'"]


def test_an_included_workflows_stages_come_in_at_the_include_line():
    boot = BOOT.replace("name: lab", "name: boot-it")
    text = "name: lab\nmethod: image\nstages:\n  - include: boot-it\n" + INSTALL + FINISH
    flow = wf.check(text, StubLibrary(workflows={"boot-it": boot}))
    assert flow.stages[0].name == "boot-it: boot"
    assert {t.line for t in flow.stages[0].tasks} == {4}
    assert [s.name for s in flow.stages[1:]] == ["install", "finish", "verify"]


def test_a_yaml_syntax_error_names_its_line():
    text = with_stage(INSTALL.replace("- write_image", "- task: write_image\n        params: {disk: [/dev/sda}"))
    [message] = problems(text)
    assert message.startswith(f"line {line_of(text, 'params: {disk')}: not valid YAML: "), message


def test_anchors_and_aliases_are_refused():
    text = with_stage(INSTALL.replace("- wipe_disks", "- &w wipe_disks\n      - *w"))
    assert problems(text) == [f"line {line_of(text, '&w')}: anchors and aliases are not allowed"]


def test_a_template_syntax_error_names_its_task():
    text = with_stage(INSTALL + "  - name: name\n    tasks:\n      - task: set_hostname\n"
                      "        params: {hostname: '{{ machine.hostname '}\n")  # fmt: skip
    assert problems(text) == [
        f"line {line_of(text, 'task: set_hostname')}: set_hostname: template error: unexpected end of template, "
        "expected 'end of print statement'."
    ]


def test_a_template_render_error_names_its_own_task_among_several():
    text = with_stage(INSTALL + "  - name: name\n    tasks:\n"
                      "      - task: set_hostname\n        params: {hostname: '{{ machine.short }}.lab'}\n"
                      "      - task: ssh_keys\n        params: {user: '{{ machine.owner.login }}'}\n")  # fmt: skip
    assert problems(text) == [
        f"line {line_of(text, 'task: ssh_keys')}: ssh_keys: template error: undefined: 'dict object' has no "
        "attribute 'owner'"
    ]


def test_a_template_hitting_a_render_bound_is_refused():
    text = with_stage(INSTALL + "  - name: name\n    tasks:\n      - task: set_hostname\n"
                      "        params: {hostname: \"{{ 'x' * 10**9 }}\"}\n")  # fmt: skip
    [message] = problems(text)
    assert message.startswith(f"line {line_of(text, 'task: set_hostname')}: set_hostname: template error: ")
    assert "bound" in message


def test_templates_render_from_the_example_context_and_keep_other_values():
    rendered = wf.render_params(
        {"hostname": "{{ machine.short }}-{{ facts.disks | length }}", "keep": 3, "list": ["{{ site.slug }}", "x"]},
        wf.example_context(),
    )
    assert rendered == {"hostname": "example-2", "keep": 3, "list": ["example", "x"]}


@pytest.mark.parametrize(
    "storage, message",
    [
        ("  layout: raid1\n  disks: {count: 1}", "storage: raid1 needs at least 2 disks, the hint gives 1"),
        ("  layout: raid10\n  disks: [/dev/sda, /dev/sdb, /dev/sdc, /dev/sdd, /dev/sde]",
         "storage: raid10 needs an even number of disks"),
        ("  layout: raid1", "storage: a raid1 layout needs disks (a hint such as {count: 2})"),
        ("  layout: raid5\n  disks: {count: 3}", "storage.layout: one of single, raid1, raid10"),
        ("  layout: [raid1]\n  disks: {count: 2}", "storage.layout: one of single, raid1, raid10"),
        ("  layout: raid1\n  disks: {count: '2'}", "storage.disks.count: a whole number of at least 1"),
        ("  filesystem: zfs", "storage.filesystem: one of ext4, xfs, btrfs"),
        ("  swap_mib: -1", "storage.swap_mib: a whole number of MiB, 0 for none"),
        ("  lvm: true", "storage.lvm: an image install writes the image's own partitions; LVM layouts are for "
         "installer methods (an image whose root is on LVM is found and grown as it is)"),
    ],
)  # fmt: skip
def test_storage_layout_checks(storage, message):
    text = BOOT.replace("stages:", f"storage:\n{storage}\nstages:") + INSTALL + FINISH
    key = message.split(":")[0].split(".")[-1]
    where = line_of(text, "storage:") if key == "storage" and "needs disks" in message else None
    if where is None:
        where = line_of(text, {"storage": "disks:", "count": "disks:"}.get(key, f"{key}:"))
    assert problems(text) == [f"line {where}: {message}"]


def test_an_installer_workflow_may_put_its_root_on_lvm_over_raid():
    text = wf.stock_text(InstallMethod.PRESEED).replace(
        "name: stock-installer", "name: lvm-raid\nstorage:\n  layout: raid10\n  disks: {count: 4}\n  lvm: true"
    )
    flow = wf.check(text)
    assert flow.storage == wf.Storage(layout="raid10", disks={"count": 4}, lvm=True)


def test_an_image_task_in_an_installer_workflow_is_refused():
    text = wf.stock_text(InstallMethod.PRESEED).replace("      - wait_installer\n", "      - wait_installer\n"
                                                         "      - wipe_disks\n")  # fmt: skip
    assert f"line {line_of(text, 'wipe_disks')}: wipe_disks does not run in preseed installs" in problems(text)


def test_unknown_keys_everywhere_are_named():
    text = BOOT.replace("name: lab", "name: lab\nowner: ops").replace("  - name: boot", "  - name: boot\n    when: x")
    text += INSTALL.replace("- wipe_disks", "- task: wipe_disks\n        if: y") + FINISH
    assert problems(text) == [
        "line 2: unknown key 'owner'; a workflow has name, description, method, purpose, storage, stages",
        f"line {line_of(text, 'when:')}: unknown key 'when'; a stage has name, run, tasks, before, after",
        f"line {line_of(text, 'if:')}: unknown key 'if'; a task has backoff, name, on_failure, params, retries, "
        "task, timeout",
    ]


# --- scripts before and after stages ----------------------------------------------------------------------


def test_before_and_after_scripts_frame_a_serial_stage_in_order():
    text = with_stage(
        "  - name: install\n    before: tune\n    after: [collect, tune]\n    tasks:\n      - wipe_disks\n"
        "      - write_image\n      - first_boot_callback\n"
    )
    install = wf.check(text, LIBRARY).stages[1]
    assert install.parallel is False
    assert [(t.task, t.name, t.params) for t in install.tasks] == [
        ("run_script", "before install: tune", {"script": "tune"}),
        ("wipe_disks", "Agent: wipe disks", {}),
        ("write_image", "Agent: write image", {}),
        ("first_boot_callback", "Agent: first boot callback", {}),
        ("run_script", "after install: collect", {"script": "collect"}),
        ("run_script", "after install: tune", {"script": "tune"}),
    ]
    assert install.tasks[0].line == line_of(text, "before: tune")
    assert install.tasks[5].line == line_of(text, "after: [collect")


def test_before_and_after_scripts_of_a_parallel_stage_are_serial_stages_around_it():
    text = with_stage(
        "  - name: wipe\n    run: parallel\n    before: [tune]\n    after: collect\n    tasks:\n"
        "      - task: wipe_disks\n        params: {disks: /dev/sda}\n"
        "      - task: wipe_disks\n        params: {disks: /dev/sdb}\n" + INSTALL.replace("      - wipe_disks\n", "")
    )
    stages = wf.check(text, LIBRARY).stages
    assert [(s.name, s.parallel, [t.task for t in s.tasks]) for s in stages[1:4]] == [
        ("wipe: before", False, ["run_script"]),
        ("wipe", True, ["wipe_disks", "wipe_disks"]),
        ("wipe: after", False, ["run_script"]),
    ]
    assert stages[1].tasks[0].params == {"script": "tune"} and stages[3].tasks[0].params == {"script": "collect"}


def test_a_before_script_not_in_the_library_is_refused_at_its_line():
    text = with_stage(INSTALL.replace("    tasks:\n      - wipe_disks", "    before: [tune, nope]\n    tasks:\n"
                                      "      - wipe_disks"))  # fmt: skip
    assert problems(text) == [f"line {line_of(text, 'before:')}: run_script.script: no script 'nope' in the script "
                              "library"]  # fmt: skip


def test_an_included_workflows_tasks_must_run_in_the_including_workflows_methods():
    agent_only = BOOT.replace("name: lab", "name: agent-wipe") + "  - name: wipe\n    tasks: [wipe_disks]\n"
    preseed = (
        "name: outer\nmethod: preseed\nstages:\n  - include: agent-wipe\n"
        "  - name: install\n    tasks: [wait_installer]\n"
        "  - name: finish\n    tasks: [remove_boot_config, set_boot_disk]\n  - name: verify\n    tasks: [verify]\n"
    )
    library = StubLibrary(workflows={"agent-wipe": agent_only})
    assert problems(preseed, library) == ["line 4: include agent-wipe: its wipe_disks does not run in preseed installs"]
    # Tasks of every method come in.
    generic = BOOT.replace("name: lab", "name: boot-any").replace("method: image", "method: [image, preseed]")
    flow = wf.check(preseed.replace("agent-wipe", "boot-any"), StubLibrary(workflows={"boot-any": generic}))
    assert [s.name for s in flow.stages][:2] == ["boot-any: boot", "install"]


# --- hardware RAID through the BMC -------------------------------------------------------------------------

RAID_BOOT = BOOT.replace(
    "      - write_boot_config\n",
    "      - write_boot_config\n"
    "      - task: hardware_raid\n"
    "        params: {level: RAID1, drives: [Disk.Bay.0, Disk.Bay.1], controller: RAID.Integrated.1-1}\n",
)


def test_a_document_with_hardware_raid_checks_for_images_and_installers():
    text = RAID_BOOT + INSTALL + FINISH
    workflow = wf.check(text, LIBRARY)
    raid = next(t for _, _, t in workflow.tasks() if t.task == "hardware_raid")
    params = {"level": "RAID1", "drives": ["Disk.Bay.0", "Disk.Bay.1"], "controller": "RAID.Integrated.1-1"}
    assert (raid.params, raid.line) == (params, line_of(text, "task: hardware_raid"))
    installer = (
        (wf.STOCK_DIR / "installer.yaml")
        .read_text()
        .replace(
            "      - write_boot_config\n",
            "      - write_boot_config\n      - {task: hardware_raid, params: {level: RAID5, drives: all}}\n",
        )
    )
    assert [t.task for _, _, t in wf.check(installer, LIBRARY).tasks()][:3] == [
        "check_bmc",
        "write_boot_config",
        "hardware_raid",
    ]
    kind = taskkinds.get("hardware_raid")
    assert kind.destructive and kind.category == taskkinds.Category.OUT_OF_BAND and not kind.methods


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{level: RAID1, drives: [Disk.Bay.0]}", "hardware_raid.drives: RAID1 needs at least 2 drives, not 1"),
        ("{level: RAID10, drives: [a, b, c, d, e]}", "RAID10 mirrors drives in pairs: it needs an even number"),
        ("{level: RAID1, drives: [a, a]}", "hardware_raid.drives: a drive is listed twice"),
        ("{level: RAID6, drives: all}", "hardware_raid.level: 'RAID6' is not one of RAID0, RAID1, RAID5, RAID10"),
        ("{level: RAID1, drives: some}", "hardware_raid.drives: 'some' is not a list of drive ids or all"),
        ("{level: RAID1, drives: []}", "hardware_raid.drives: [] is not a list of drive ids or all"),
        ("{drives: all}", "hardware_raid needs the parameter 'level'"),
    ],
)
def test_hardware_raid_params_are_checked_with_their_line(params, message):
    text = with_stage(INSTALL).replace(
        "      - check_bmc\n", f"      - check_bmc\n      - {{task: hardware_raid, params: {params}}}\n"
    )
    found = problems(text)
    assert len(found) == 1 and message in found[0], found
    assert found[0].startswith(f"line {line_of(text, 'hardware_raid')}: ")


def test_hardware_raid_after_the_power_cycle_belongs_before_it():
    text = with_stage(INSTALL).replace(
        "      - wait_boot\n",
        "      - wait_boot\n  - name: late\n    tasks: [{task: hardware_raid, params: {level: RAID0}}]\n",
    )
    assert problems(text) == [
        f"line {line_of(text, 'hardware_raid')}: hardware_raid belongs before the task at line "
        f"{line_of(text, 'wait_boot')}: phases only go forward"
    ]
