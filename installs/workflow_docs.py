"""The generated workflow documentation: the task reference (docs/workflow-tasks.md) from the task table
(installs/taskkinds.py), and the JSON Schema (docs/workflow.schema.json, installs/workflow_schema.py).

``manage.py workflow docs`` writes both; ``--check`` and a test say when the committed files are behind the
table, so the reference cannot drift from what the checker accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

from inventory.models import InstallMethod

from . import hints, taskkinds
from . import workflow as wf
from .taskkinds import Category, ParamType
from .workflow_schema import required_params, schema_text

# The checkout the committed files live in.
PROJECT_DIR = Path(__file__).resolve().parent.parent

_CATEGORIES = {
    Category.AGENT: "agent (run by the agent in the memory OS; image installs)",
    Category.OUT_OF_BAND: "out-of-band (a worker calls the machine's BMC)",
    Category.CONTROL: "control plane (boot files, waits, checks)",
}


def files() -> dict[str, str]:
    """Each generated file, by its path under the project directory, with what it should hold."""
    return {"docs/workflow-tasks.md": task_reference(), "docs/workflow.schema.json": schema_text()}


def write(base: Path | None = None) -> list[str]:
    """Write the files that differ; return their paths."""
    base = base or PROJECT_DIR
    written = []
    for name, text in files().items():
        path = base / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(name)
    return written


def stale(base: Path | None = None) -> list[str]:
    """The generated files that are missing or differ from what the table gives now."""
    base = base or PROJECT_DIR
    return [name for name, text in files().items() if not (base / name).exists() or (base / name).read_text() != text]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _value(value) -> str:
    if value is None:
        return ""
    return f"`{json.dumps(value)}`" if not isinstance(value, str) else f"`{value}`"


def _methods(kind: taskkinds.TaskKind) -> str:
    if not kind.methods:
        return "every method"
    return ", ".join(m for m in InstallMethod.values if m in kind.methods)


def _params(kind: taskkinds.TaskKind) -> list[str]:
    if not kind.params:
        return ["No parameters."]
    always = set(required_params(kind))
    rows = ["| parameter | type | required | default | choices | what |", "|---|---|---|---|---|---|"]
    for p in kind.params:
        if p.name in always:
            required = "yes"
        elif p.required and wf._from_storage(kind.name, p.name, None):
            required = "no: the storage layout's disks, else the profile's disk"
        elif p.required:
            required = "yes, unless a raid storage layout gives it"
        else:
            required = "no"
        choices = ", ".join(f"`{c}`" for c in p.choices) if p.type == ParamType.CHOICE else ""
        rows.append(f"| `{p.name}` | {p.type} | {required} | {_cell(_value(p.default))} | {choices} | {_cell(p.doc)} |")
    return rows


def _words(words: frozenset[str]) -> str:
    return ", ".join(f"`{w}`" for w in sorted(words)) or "nothing"


def task_reference() -> str:
    out = [
        "# Workflow tasks",
        "",
        "<!-- Generated from installs/taskkinds.py by `manage.py workflow docs`; edit the table, not this file. -->",
        "",
        "Every task a workflow may name under `task:`. A stage lists its tasks either as the kind's name alone",
        "(`- check_bmc`) or as a mapping:",
        "",
        "```yaml",
        "- task: write_image",
        "  name: Write the image to the array    # the label people see",
        "  params: {disk: /dev/md0}",
        "  timeout: 30m                          # seconds, or 90s, 30m, 2h; from 1 s to 7 days",
        f"  retries: 2                            # 0 to {wf.MAX_RETRIES}; destructive tasks only when safe to repeat",
        "  backoff: 30s                          # before the first retry, doubling after",
        "  on_failure: fail                      # or continue: the task is marked and the install goes on",
        "```",
        "",
        "String parameters may be Jinja2 templates (`{{ storage.array }}`, `{{ machine.hostname }}`), rendered",
        "for each machine in the answer files' sandbox. A disk parameter takes a `/dev` path, a template giving",
        f"one, or a disk hint: a mapping of {', '.join(f'`{k}`' for k in hints.HINT_KEYS)}",
        "(installs/hints.py). The JSON Schema of the whole document is docs/workflow.schema.json.",
        "",
        "**Destructive** tasks destroy data on the machine: protected machines refuse them, and they are retried",
        "only when **safe to repeat**. **Needs** are what must run before a task (in an earlier stage, or earlier",
        "in the same serial stage); **provides** are what it gives the tasks after it.",
        "",
        "| task | category | methods | destructive |",
        "|---|---|---|---|",
    ]
    for kind in taskkinds.TASKS.values():
        destructive = "yes" if kind.destructive else "no"
        out.append(f"| [`{kind.name}`](#{kind.name}) | {kind.category} | {_methods(kind)} | {destructive} |")
    for kind in taskkinds.TASKS.values():
        facts = [
            f"- category: {_CATEGORIES[kind.category]}",
            f"- install methods: {_methods(kind)}",
            f"- destructive: {'yes' if kind.destructive else 'no'}",
            f"- safe to repeat: {'yes' if kind.safe_to_repeat else 'no'}",
        ]
        if kind.default_retries:
            facts.append(f"- retries when the workflow gives none: {kind.default_retries}")
        if kind.waits:
            facts.append("- waits for the machine: runs alone, in a serial stage; `on_failure: continue` is refused")
        if kind.capabilities:
            names = ", ".join(f"`{c}`" for c in sorted(kind.capabilities))
            facts.append(f"- the machine's driver must be able to do: {names} ([docs/drivers.md](drivers.md))")
        facts.append(f"- needs: {_words(kind.needs)}")
        extra = sorted(
            ((m, w) for (name, m), w in taskkinds.METHOD_NEEDS.items() if name == kind.name), key=lambda e: e[0]
        )
        for method, words in extra:
            facts.append(f"- needs in {method} installs, too: {_words(words)}")
        facts.append(f"- provides: {_words(kind.provides)}")
        out += ["", f"## {kind.name}", "", kind.doc, "", *facts, "", *_params(kind)]
    return "\n".join(out) + "\n"
