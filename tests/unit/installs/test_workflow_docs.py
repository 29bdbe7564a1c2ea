"""The generated workflow docs: the committed task reference and JSON Schema are what the task table gives
now, the stock workflows validate against the schema, and the schema refuses what the checker refuses in a
document on its own (unknown keys and kinds, a kind's parameters and their types)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from installs import hints, taskkinds, workflow_docs, workflow_schema
from installs import workflow as wf

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def validator():
    return jsonschema_rs.validator_for(json.loads((ROOT / "docs/workflow.schema.json").read_text()))


def test_the_committed_docs_are_what_the_task_table_gives():
    assert workflow_docs.stale(ROOT) == [], "run: manage.py workflow docs"


def test_the_reference_describes_every_task_and_parameter():
    text = (ROOT / "docs/workflow-tasks.md").read_text()
    for kind in taskkinds.TASKS.values():
        assert f"\n## {kind.name}\n" in text
        for param in kind.params:
            assert f"| `{param.name}` | {param.type} |" in text
    raid = text.split("\n## raid\n")[1].split("\n## ")[0]
    assert "- destructive: yes" in raid and "- install methods: image" in raid
    assert "| `level` | choice | yes, unless a raid storage layout gives it |  | `1`, `10` |" in raid
    assert "- safe to repeat: no" in text.split("\n## run_script\n")[1].split("\n## ")[0]


def test_stock_workflows_validate_against_the_schema(validator):
    stock = sorted((ROOT / "installs/stock_workflows").glob("*.yaml"))
    assert len(stock) >= 2
    for path in stock:
        document = yaml.safe_load(path.read_text())
        assert validator.is_valid(document), [e.message for e in validator.iter_errors(document)]
        wf.check(path.read_text())  # and the checker agrees


def test_the_documented_examples_validate_against_the_schema(validator):
    for path in sorted((ROOT / "docs/examples").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        assert validator.is_valid(document), (path.name, [e.message for e in validator.iter_errors(document)])


def test_a_document_with_storage_scripts_hints_and_templates_validates(validator):
    text = """
name: raid-web
method: image
storage: {layout: raid1, disks: {rotational: false, count: 2}}
stages:
  - name: boot
    tasks: [check_bmc, write_boot_config, set_boot_pxe, power_cycle, wait_boot]
  - name: disks
    run: serial
    tasks:
      - task: wipe_disks
      - raid
      - task: write_image
        params: {disk: "{{ storage.array }}", compression: zstd}
        timeout: 30m
        retries: 2
        backoff: 30s
      - {task: grow_root, params: {disk: {name: "md*"}}}
      - task: set_boot_device
        params: {device: disk, persistent: true}
        on_failure: continue
  - include: common-finish
"""
    assert validator.is_valid(yaml.safe_load(text)), [e.message for e in validator.iter_errors(yaml.safe_load(text))]


@pytest.mark.parametrize(
    "stage, where, said",
    [
        ({"name": "s", "tasks": ["nope"]}, ["stages", 0, "tasks", 0], "unknown task 'nope'"),
        ({"name": "s", "tasks": [{"task": "raid", "params": {"level": 5, "members": ["/dev/sda"]}}]},
         ["stages", 0, "tasks", 0, "params", "level"], "raid.level"),
        ({"name": "s", "tasks": [{"task": "power_off", "params": {"hard": True}}]},
         ["stages", 0, "tasks", 0, "params"], "no parameter 'hard'"),
        ({"name": "s", "tasks": [{"task": "partition", "params": {"disk": "/dev/sda"}}]},
         ["stages", 0, "tasks", 0, "params"], "needs the parameter 'layout'"),
        ({"name": "s", "tasks": ["partition"]}, ["stages", 0, "tasks", 0], "needs the parameter 'disk'"),
        ({"name": "s", "tasks": [{"task": "wipe_disks", "params": {"disks": {"colour": "red"}}}]},
         ["stages", 0, "tasks", 0, "params", "disks"], "unknown key 'colour'"),
        ({"name": "s", "tasks": [{"task": "check_bmc", "retries": 11}]}, ["stages", 0, "tasks", 0, "retries"],
         "retries"),
        ({"name": "s", "tasks": [{"task": "check_bmc", "timeout": "soon"}]}, ["stages", 0, "tasks", 0, "timeout"],
         "timeout"),
        ({"name": "s", "run": "sideways", "tasks": ["check_bmc"]}, ["stages", 0, "run"], "run: serial or parallel"),
        ({"name": "s", "tasks": ["check_bmc"], "colour": "red"}, ["stages", 0], "unknown key 'colour'"),
        ({"include": "other", "name": "s"}, ["stages", 0], "unknown key 'include'"),
    ],
)  # fmt: skip
def test_the_schema_refuses_what_the_checker_refuses_and_says_where(validator, stage, where, said):
    document = {"name": "w", "method": "image", "stages": [stage]}
    errors = list(validator.iter_errors(document))
    assert errors and any(list(e.instance_path) == where for e in errors), [
        (list(e.instance_path), e.message) for e in errors
    ]
    with pytest.raises(wf.WorkflowInvalid) as refused:
        wf.check(yaml.safe_dump(document))
    assert any(said in message for message in refused.value.messages), refused.value.messages


def test_the_schema_refuses_unknown_top_level_and_storage_keys(validator):
    assert not validator.is_valid({"name": "w", "method": "image", "stages": [], "colour": 1})
    assert not validator.is_valid({"name": "W!", "method": "image", "stages": [{"name": "s", "tasks": ["verify"]}]})
    assert not validator.is_valid({"name": "w", "method": "floppy", "stages": [{"name": "s", "tasks": ["verify"]}]})
    storage = {
        "name": "w",
        "method": "image",
        "storage": {"layout": "raid5"},
        "stages": [{"name": "s", "tasks": ["verify"]}],
    }
    assert not validator.is_valid(storage)


def test_every_hint_key_and_task_kind_is_in_the_schema():
    schema = workflow_schema.document_schema()
    assert set(schema["$defs"]["WorkflowDiskHint"]["properties"]) == set(hints.HINT_KEYS)
    assert schema["$defs"]["WorkflowTask"]["else"]["properties"]["task"]["enum"] == list(taskkinds.TASKS)
    kinds = [rule["if"]["properties"]["task"]["const"] for rule in schema["$defs"]["WorkflowTask"]["else"]["allOf"]]
    assert kinds == list(taskkinds.TASKS)


def test_the_openapi_components_resolve_inside_the_document():
    spec = {"openapi": "3.1.0", "components": {"schemas": {}}}
    workflow_schema.add_to_openapi(spec)
    text = json.dumps(spec)
    assert "#/$defs/" not in text
    schema = {**spec["components"]["schemas"]["WorkflowDocument"], "components": spec["components"]}
    validator = jsonschema_rs.validator_for(schema)
    stock = yaml.safe_load((ROOT / "installs/stock_workflows/image.yaml").read_text())
    assert validator.is_valid(stock)
    assert not validator.is_valid({**stock, "stages": [{"name": "s", "tasks": ["nope"]}]})
