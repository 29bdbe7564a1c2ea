"""The workflow document as a JSON Schema (draft 2020-12), generated from the task table (installs/taskkinds.py)
and the checker's limits (installs/workflow.py), so that editors and scripts can validate and complete a
document before they send it.

The schema says what one document can say on its own: keys, task kinds, each kind's parameters and their
types, stage fields, storage, disk hints. What needs more than the document (a script or an included
workflow that exists, the order of tasks, which install methods a task serves, templates that render) is
checked when the document is saved, and only there. The same schema is written to docs/workflow.schema.json
(``manage.py workflow docs``) and is the component ``WorkflowDocument`` of both OpenAPI documents.
"""

from __future__ import annotations

import json
from typing import Any

from inventory.models import InstallMethod

from . import taskkinds
from . import workflow as wf
from .taskkinds import ParamType

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# The names under which the parts are defined, both in the file's $defs and among the OpenAPI components
# (prefixed, so they cannot meet the APIs' own schemas, such as the agent's Disk).
ROOT = "WorkflowDocument"


def _ref(prefix: str, part: str) -> dict:
    return {"$ref": f"{prefix}Workflow{part}"}


def _choice(choices: tuple[str, ...]) -> list:
    """A choice's values as YAML reads them: ``level: 1`` is the number 1, which the checker takes for "1"."""
    values: list[Any] = list(choices)
    for choice in choices:
        try:
            number = float(choice)
        except ValueError:
            continue
        values.append(int(number) if choice.isdigit() else number)
    return values


def _param(spec: taskkinds.Param, prefix: str) -> dict:
    template = _ref(prefix, "Template")
    typed = {
        ParamType.STRING: {"type": "string"},
        ParamType.INTEGER: {"anyOf": [{"type": "integer", "minimum": 0}, template]},
        ParamType.BOOLEAN: {"anyOf": [{"type": "boolean"}, template]},
        ParamType.STRINGS: {"anyOf": [{"type": "array", "items": {"type": "string"}}, template]},
        ParamType.DISK: _ref(prefix, "Disk"),
        ParamType.DISKS: _ref(prefix, "Disks"),
        ParamType.SCRIPT: {"type": "string", "pattern": r"^[a-z0-9][a-z0-9._-]*(@[0-9]+)?$"},
        ParamType.CHOICE: {"anyOf": [{"enum": _choice(spec.choices)}, template]},
        ParamType.MAPPING: {"type": "object"},
        ParamType.DRIVE_IDS: {
            "anyOf": [{"const": "all"}, {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}]
        },
    }[spec.type]
    schema = {"description": spec.doc, **typed}
    if spec.default is not None:
        schema["default"] = spec.default
    return schema


def required_params(kind: taskkinds.TaskKind) -> list[str]:
    """The parameters a task must always give: not those a workflow's storage layout gives when left out."""
    raid = wf.Storage(layout="raid1")
    return [p.name for p in kind.params if p.required and not wf._from_storage(kind.name, p.name, raid)]


def _kind_params(kind: taskkinds.TaskKind, prefix: str) -> dict:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {p.name: _param(p, prefix) for p in kind.params},
        "additionalProperties": False,
    }
    if required := required_params(kind):
        schema["required"] = required
    return schema


def _task(prefix: str) -> dict:
    names = list(taskkinds.TASKS)
    per_kind = []
    for kind in taskkinds.TASKS.values():
        then: dict[str, Any] = {"properties": {"params": _kind_params(kind, prefix)}}
        if required_params(kind):
            then["required"] = ["params"]
        per_kind.append({"if": {"properties": {"task": {"const": kind.name}}, "required": ["task"]}, "then": then})
    bare = [k.name for k in taskkinds.TASKS.values() if not required_params(k)]
    return {
        "description": "A task: the name of a kind with no required parameter, or a mapping with task: <kind>.",
        "if": {"type": "string"},
        "then": {"enum": bare},
        "else": {
            "type": "object",
            "required": ["task"],
            "additionalProperties": False,
            "properties": {
                "task": {"enum": names, "description": "The kind of task (docs/workflow-tasks.md)."},
                "name": {"type": "string", "maxLength": 100, "description": "The label people see."},
                "params": {"type": "object", "description": "The kind's parameters; strings may be templates."},
                "timeout": {**_ref(prefix, "Duration"), "description": "How long it may run."},
                "retries": {"type": "integer", "minimum": 0, "maximum": wf.MAX_RETRIES},
                "backoff": {**_ref(prefix, "Duration"), "description": "Before the first retry, doubling after."},
                "on_failure": {
                    "enum": ["fail", "continue"],
                    "default": "fail",
                    "description": "fail: the install fails; continue: the task is marked and the install goes on.",
                },
            },
            "allOf": per_kind,
        },
    }


def _hint() -> dict:
    text = {"type": "string", "minLength": 1}
    return {
        "description": "A disk hint (installs/hints.py): a disk matches when it meets every key.",
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            "name": {**text, "description": 'A glob on the kernel name ("sd*"), or a /dev path.'},
            "size": {
                "description": 'Bytes, or a size with an optional comparison: "500GiB", ">=100GB", "<2TiB".',
                "anyOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "pattern": r"^\s*(>=|<=|==|>|<)?\s*\d+(\.\d+)?\s*[A-Za-z]*\s*$"},
                ],
            },
            "model": {**text, "description": "Case-insensitive substring."},
            "vendor": {**text, "description": "Case-insensitive substring."},
            "serial": {**text, "description": "Exact."},
            "wwn": {**text, "description": "Exact."},
            "rotational": {"type": "boolean"},
            "all": {"type": "boolean", "description": "Every disk."},
            "count": {"type": "integer", "minimum": 1, "description": "Take this many matches, smallest first."},
        },
    }


def _definitions(prefix: str) -> dict[str, dict]:
    methods = list(InstallMethod.values)
    path = {"type": "string", "pattern": r"^/dev/[A-Za-z0-9/_.:-]+$"}
    parts = {
        "Method": {"enum": methods, "description": "An install method."},
        "Template": {
            "type": "string",
            "pattern": r"\{[{%]",
            "description": "A Jinja2 template, rendered for each machine (machine, site, profile, facts, storage).",
        },
        "DiskHint": _hint(),
        "Disk": {
            "description": "A /dev path, a disk hint, or a template giving a path.",
            "anyOf": [path, _ref(prefix, "Template"), _ref(prefix, "DiskHint")],
        },
        "Disks": {
            "description": "A list of /dev paths or disk hints, or one hint matching several disks ({all: true}).",
            "anyOf": [_ref(prefix, "Disk"), {"type": "array", "minItems": 1, "items": _ref(prefix, "Disk")}],
        },
        "Duration": {
            "description": 'Seconds, or "90s", "30m", "2h": from 1 s to 7 days.',
            "anyOf": [
                {"type": "number", "minimum": 1, "maximum": wf.MAX_TIMEOUT_S},
                {"type": "string", "pattern": r"^\s*\d+\s*[smh]?\s*$"},
            ],
        },
        "Storage": {
            "description": "How the disks are laid out; raid1 and raid10 need disks.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "layout": {"enum": list(wf.LAYOUTS), "default": "single"},
                "disks": _ref(prefix, "Disks"),
                "lvm": {"type": "boolean", "default": False, "description": "Installer methods only."},
                "filesystem": {"enum": list(wf.FILESYSTEMS), "default": "ext4"},
                "swap_mib": {"type": "integer", "minimum": 0, "default": 0},
            },
        },
        "Include": {
            "description": "The stages of another workflow of the library, in its place.",
            "type": "object",
            "required": ["include"],
            "additionalProperties": False,
            "properties": {"include": {"type": "string", "pattern": wf.NAME.pattern}},
        },
        "Task": _task(prefix),
        "Stage": {
            "description": "Tasks run one after another (serial) or all at once (parallel), framed by scripts.",
            "type": "object",
            "required": ["name", "tasks"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "pattern": r"\S"},
                "run": {"enum": ["serial", "parallel"], "default": "serial"},
                "tasks": {"type": "array", "minItems": 1, "items": _ref(prefix, "Task")},
                "before": _scripts(),
                "after": _scripts(),
            },
        },
    }
    return {f"Workflow{name}": part for name, part in parts.items()}


def _scripts() -> dict:
    ref = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9._-]*(@[0-9]+)?$"}
    return {"description": "A library script (name or name@version), or a list of them.",
            "anyOf": [ref, {"type": "array", "items": ref}]}  # fmt: skip


def _root(prefix: str) -> dict:
    method = _ref(prefix, "Method")
    return {
        "title": "Workflow document",
        "description": "What an install does, as stages of tasks (docs/workflow-tasks.md). Saving a document "
        "also checks what a schema cannot: the scripts and workflows it names, the order of its tasks, "
        "the methods each task serves, its templates.",
        "type": "object",
        "required": ["name", "method", "stages"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": wf.NAME.pattern},
            "description": {"type": "string"},
            "method": {"anyOf": [method, {"type": "array", "minItems": 1, "items": method}]},
            "purpose": {
                "enum": list(wf.PURPOSES),
                "default": "deploy",
                "description": "What operation runs it: a profile's installs run deploy workflows; commission, test "
                "and release workflows run on the site's memory OS (method image).",
            },
            "storage": _ref(prefix, "Storage"),
            "stages": {
                "type": "array",
                "minItems": 1,
                "maxItems": wf.MAX_STAGES,
                # if/then rather than anyOf, so that a validator names what is wrong inside the stage
                "items": {
                    "if": {"required": ["include"]},
                    "then": _ref(prefix, "Include"),
                    "else": _ref(prefix, "Stage"),
                },
            },
        },
    }


def document_schema() -> dict:
    """The schema as a document of its own (docs/workflow.schema.json)."""
    prefix = "#/$defs/"
    return {"$schema": DIALECT, **_root(prefix), "$defs": _definitions(prefix)}


def schema_text() -> str:
    return json.dumps(document_schema(), indent=2, ensure_ascii=False) + "\n"


def add_to_openapi(schema: dict) -> None:
    """Put WorkflowDocument and its parts among an OpenAPI 3.1 document's components (whose schema objects
    are JSON Schema 2020-12)."""
    prefix = "#/components/schemas/"
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(_definitions(prefix))
    components[ROOT] = _root(prefix)
