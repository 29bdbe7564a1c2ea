"""Workflow documents: what an install does, as stages of tasks, checked when saved and frozen into each
install's plan.

A workflow is YAML (docs/workflows.md): a name, the install methods it serves, an optional storage
layout, and stages in order. A stage runs its tasks one after another (``run: serial``, the default) or
all at once (``run: parallel``), and may run library scripts before and after them. A task names a kind of
installs/taskkinds.py and may give params (strings are Jinja2 templates rendered in the answer files'
sandbox), a timeout, retries with backoff, what a failure does, and a label.

``check(text)`` reads and checks a document and returns the Workflow or raises WorkflowInvalid, whose
messages each give the line and the reason. Nothing here touches the database: what the document refers
to (scripts, included workflows) is looked up through the ``Library`` the caller passes.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import jinja2
import yaml
from django.core.exceptions import ValidationError

from inventory.models import InstallMethod
from provisioner.bmc import RaidLevel, raid_drive_count_problem
from provisioner.pxe import TemplateError, render_template

from . import hints, stock_scripts, taskkinds
from .stepkinds import KINDS
from .taskkinds import Category, ParamType

MAX_DOCUMENT = 64 * 1024
# What a workflow is for (installs.models.Purpose): a profile's installs run deploy workflows; commissioning,
# hardware tests and release run theirs on the site's memory OS.
PURPOSES = ("deploy", "commission", "test", "release")
MAX_STAGES = 50
MAX_TASKS = 200
MAX_RETRIES = 10
MAX_TIMEOUT_S = 7 * 86400
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LAYOUTS = ("single", "raid1", "raid10")
FILESYSTEMS = ("ext4", "xfs", "btrfs")
STOCK_DIR = Path(__file__).with_name("stock_workflows")

_NEED_PHRASES = {
    "agent": "the agent running: a wait_boot task before it",
    "target": "an image written: a write_image task before it",
    "array": "a RAID array: a raid task before it",
    "boot_config": "a write_boot_config task before it",
    "powered": "the machine powered: a power_cycle or power_on task before it",
    "booted": "a wait_boot task before it",
    "installed": "the installer finished: a wait_installer task before it",
    "callback": "the first-boot callback installed: a first_boot_callback task before it",
    "rebooted": "a reboot task before it",
}
_PHASE_ORDER = ["preparing", "powering", "booting", "installing", "finalizing", "verifying"]


class WorkflowInvalid(ValidationError):
    """The document cannot be used; each message is "line N: what is wrong"."""


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass(frozen=True)
class Task:
    task: str
    name: str
    params: dict
    timeout_s: int | None = None
    retries: int = 0
    backoff_s: float | None = None  # None: the STEP_RETRY_BASE_S setting
    on_failure: str = "fail"  # fail | continue
    line: int = 0

    @property
    def kind(self) -> taskkinds.TaskKind:
        return taskkinds.TASKS[self.task]


@dataclass(frozen=True)
class Stage:
    name: str
    parallel: bool
    tasks: tuple[Task, ...]
    line: int = 0


@dataclass(frozen=True)
class Storage:
    layout: str = "single"
    disks: Any = None  # a hint, a list of paths or hints, or None: the profile's disk
    lvm: bool = False
    filesystem: str = "ext4"
    swap_mib: int = 0


@dataclass(frozen=True)
class Workflow:
    name: str
    description: str
    methods: tuple[str, ...]
    storage: Storage | None
    stages: tuple[Stage, ...]
    version: int = 0  # the library's version number; 0 for a stock workflow or one not yet saved
    purpose: str = "deploy"  # PURPOSES: what operation runs it (a profile's installs run deploy ones)

    def tasks(self):
        for index, stage in enumerate(self.stages):
            for task in stage.tasks:
                yield index, stage, task

    def to_json(self) -> dict:
        return asdict(self) | {"methods": list(self.methods)}

    @classmethod
    def from_json(cls, data: dict) -> Workflow:
        storage = data.get("storage")
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            methods=tuple(data.get("methods") or ()),
            storage=Storage(**storage) if storage else None,
            stages=tuple(
                Stage(
                    name=s["name"],
                    parallel=s["parallel"],
                    tasks=tuple(Task(**t) for t in s["tasks"]),
                    line=s.get("line", 0),
                )
                for s in data["stages"]
            ),
            version=data.get("version", 0),
            purpose=data.get("purpose", "deploy"),
        )


class Library(Protocol):
    """What a document may refer to, looked up by the caller (the database, or nothing)."""

    def script(self, ref: str) -> dict | None:
        """{"name", "version", "body", "timeout_s", "safe_to_repeat"} of name or name@version, or None."""

    def workflow_text(self, name: str) -> str | None:
        """The latest document of an included workflow, or None."""


class NoLibrary:
    """Only what ships with provisioner: the stock scripts."""

    def script(self, ref: str) -> dict | None:
        name, _, version = ref.partition("@")
        return stock_scripts.get(name) if version in ("", "0") else None

    def workflow_text(self, name: str) -> str | None:
        return None


# --- reading YAML with its lines ------------------------------------------------------------------------


def _load(text: str) -> tuple[Any, dict[tuple, int]]:
    """The document's data and the line of every key and list item, by path."""
    if len(text.encode()) > MAX_DOCUMENT:
        raise WorkflowInvalid([f"the document is larger than {MAX_DOCUMENT // 1024} KiB"])
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise WorkflowInvalid([f"line {event.start_mark.line + 1}: anchors and aliases are not allowed"])
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise WorkflowInvalid([f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    lines: dict[tuple, int] = {}

    def walk(node, path):
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[(*path, key.value)] = key.start_mark.line + 1
                walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    if node is not None:
        walk(node, ())
    return data, lines


def parse_duration(value: Any) -> int:
    """90, "90s", "30m", "2h" -> seconds."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int | float):
        seconds = int(value)
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", str(value))
        if not match:
            raise ValueError
        seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not 1 <= seconds <= MAX_TIMEOUT_S:
        raise ValueError
    return seconds


# --- checking ---------------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, text: str, library: Library, *, including: tuple[str, ...] = ()):
        self.text = text
        self.library = library
        self.including = including
        self.problems: list[Problem] = []
        self.data, self.lines = _load(text)

    def line(self, *path) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def problem(self, path: tuple, message: str) -> None:
        self.problems.append(Problem(self.line(*path), message))

    def run(self) -> Workflow:
        data = self.data
        if not isinstance(data, dict):
            raise WorkflowInvalid(["line 1: a workflow is a mapping with name, method and stages"])
        for key in sorted(set(data) - {"name", "description", "method", "purpose", "storage", "stages"}, key=str):
            self.problem(
                (key,), f"unknown key {key!r}; a workflow has name, description, method, purpose, storage, stages"
            )
        name = data.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            self.problem(("name",), "name: lower-case letters, digits, dots, hyphens and underscores, up to 64")
            name = str(name or "")
        description = data.get("description") or ""
        if not isinstance(description, str):
            self.problem(("description",), "description: text")
            description = ""
        purpose = data.get("purpose", "deploy")
        if purpose not in PURPOSES:
            self.problem(("purpose",), f"purpose: one of {', '.join(PURPOSES)}")
            purpose = "deploy"
        methods = self._methods(data.get("method"))
        if purpose != "deploy" and tuple(methods) != ("image",):
            self.problem(("method",), f"a {purpose} workflow runs the memory OS's agent: its method is image")
        storage = self._storage(data.get("storage"), methods)
        stages = self._stages(data.get("stages"), methods, storage)
        workflow = Workflow(
            name=name, description=description, methods=methods, storage=storage, stages=stages, purpose=purpose
        )
        if not self.problems:
            self._order(workflow)
            self._templates(workflow)
        if self.problems:
            raise WorkflowInvalid([str(p) for p in sorted(self.problems, key=lambda p: p.line)])
        return workflow

    def _methods(self, value) -> tuple[str, ...]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values:
            self.problem(("method",), f"method: one of {', '.join(InstallMethod.values)}, or a list of them")
            return ()
        bad = [v for v in values if v not in InstallMethod.values]
        if bad:
            self.problem(("method",), f"method: {bad[0]!r} is not one of {', '.join(InstallMethod.values)}")
        return tuple(v for v in values if v in InstallMethod.values)

    def _storage(self, value, methods) -> Storage | None:
        if value is None:
            return None
        path = ("storage",)
        if not isinstance(value, dict):
            self.problem(path, "storage: a mapping with layout and disks")
            return None
        for key in sorted(set(value) - {"layout", "disks", "lvm", "filesystem", "swap_mib"}, key=str):
            self.problem((*path, key), f"storage: unknown key {key!r}")
        layout = value.get("layout", "single")
        if layout not in LAYOUTS:
            self.problem((*path, "layout"), f"storage.layout: one of {', '.join(LAYOUTS)}")
            layout = "single"  # a list or mapping here must not reach the checks below as a dict key
        filesystem = value.get("filesystem", "ext4")
        if filesystem not in FILESYSTEMS:
            self.problem((*path, "filesystem"), f"storage.filesystem: one of {', '.join(FILESYSTEMS)}")
            filesystem = "ext4"
        lvm = value.get("lvm", False)
        if not isinstance(lvm, bool):
            self.problem((*path, "lvm"), "storage.lvm: true or false")
        elif lvm and InstallMethod.IMAGE in methods:
            self.problem(
                (*path, "lvm"),
                "storage.lvm: an image install writes the image's own partitions; LVM layouts are for installer "
                "methods (an image whose root is on LVM is found and grown as it is)",
            )
        swap = value.get("swap_mib", 0)
        if isinstance(swap, bool) or not isinstance(swap, int) or swap < 0:
            self.problem((*path, "swap_mib"), "storage.swap_mib: a whole number of MiB, 0 for none")
        disks = value.get("disks")
        self._disks(disks, (*path, "disks"), "storage.disks")
        least = {"raid1": 2, "raid10": 4}.get(layout, 1)
        count = _disk_count(disks)
        if count is not None and count < least:
            self.problem((*path, "disks"), f"storage: {layout} needs at least {least} disks, the hint gives {count}")
        if layout == "raid10" and count is not None and count % 2:
            self.problem((*path, "disks"), "storage: raid10 needs an even number of disks")
        if layout != "single" and disks is None:
            self.problem(path, f"storage: a {layout} layout needs disks (a hint such as {{count: 2}})")
        return Storage(layout=layout, disks=disks, lvm=bool(lvm), filesystem=filesystem, swap_mib=swap or 0)

    def _disks(self, value, path, where) -> None:
        if value is None:
            return
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            here = (*path, index) if isinstance(value, list) else path
            if isinstance(item, str):
                if "{" in item:
                    continue  # a template: checked with the others
                if not re.fullmatch(r"/dev/[A-Za-z0-9/_.:-]+", item):
                    self.problem(here, f"{where}: {item!r} is neither a /dev path nor a hint")
                continue
            try:
                hints.check(item, where)
            except hints.HintError as exc:
                self.problem(here, str(exc))

    def _stages(self, value, methods, storage) -> tuple[Stage, ...]:
        if not isinstance(value, list) or not value:
            self.problem(("stages",), "stages: a list of stages, each with a name and tasks")
            return ()
        if len(value) > MAX_STAGES:
            self.problem(("stages",), f"stages: at most {MAX_STAGES}")
        stages, names = [], set()
        for index, raw in enumerate(value):
            path = ("stages", index)
            if isinstance(raw, dict) and set(raw) == {"include"}:
                stages += self._include(raw["include"], path, methods)
                continue
            if not isinstance(raw, dict):
                self.problem(path, "a stage is a mapping with name and tasks (or include: <workflow>)")
                continue
            for key in sorted(set(raw) - {"name", "run", "tasks", "before", "after"}, key=str):
                self.problem((*path, key), f"unknown key {key!r}; a stage has name, run, tasks, before, after")
            name = raw.get("name")
            if not isinstance(name, str) or not name.strip():
                self.problem(path, "a stage needs a name")
                name = f"stage {index + 1}"
            elif name in names:
                self.problem((*path, "name"), f"stage name {name!r} is used twice")
            names.add(name)
            run = raw.get("run", "serial")
            if run not in ("serial", "parallel"):
                self.problem((*path, "run"), "run: serial or parallel")
            before = self._scripts(raw.get("before"), (*path, "before"), f"before {name}", methods)
            after = self._scripts(raw.get("after"), (*path, "after"), f"after {name}", methods)
            raw_tasks = raw.get("tasks")
            if not isinstance(raw_tasks, list) or not raw_tasks:
                self.problem(path, f"stage {name!r} needs tasks: a list")
                raw_tasks = []
            body = [self._task(item, (*path, "tasks", i), methods, storage) for i, item in enumerate(raw_tasks)]
            body = [t for t in body if t is not None]
            line = self.line(*path)
            if run == "parallel":
                # A parallel stage's before and after scripts frame it: serial stages of their own.
                if before:
                    stages.append(Stage(f"{name}: before", False, tuple(before), line))
                stages.append(Stage(name, True, tuple(body), line))
                if after:
                    stages.append(Stage(f"{name}: after", False, tuple(after), line))
            else:
                stages.append(Stage(name, False, (*before, *body, *after), line))
        if sum(len(s.tasks) for s in stages) > MAX_TASKS:
            self.problem(("stages",), f"a workflow has at most {MAX_TASKS} tasks")
        return tuple(stages)

    def _include(self, name, path, methods) -> list[Stage]:
        if not isinstance(name, str) or not NAME.match(name):
            self.problem(path, "include: the name of another workflow")
            return []
        chain = (*self.including, self.data.get("name") if isinstance(self.data, dict) else "")
        if name in chain:
            self.problem(path, "include: a cycle: " + " → ".join([*(c for c in chain if c), name]))
            return []
        text = self.library.workflow_text(name)
        if text is None:
            self.problem(path, f"include: no workflow named {name!r}")
            return []
        try:
            included = _Checker(text, self.library, including=chain).run()
        except WorkflowInvalid as exc:
            self.problem(path, f"include {name}: " + "; ".join(exc.messages))
            return []
        # The included document was checked for its own methods: its tasks must also run in this one's.
        for _, _, task in included.tasks():
            off = [m for m in methods if task.kind.methods and m not in task.kind.methods]
            if off:
                self.problem(path, f"include {name}: its {task.task} does not run in {off[0]} installs")
                return []
        line = self.line(*path)
        return [
            Stage(f"{name}: {s.name}", s.parallel, tuple(_at(t, line) for t in s.tasks), line) for s in included.stages
        ]

    def _scripts(self, value, path, label, methods) -> list[Task]:
        if value is None:
            return []
        refs = [value] if isinstance(value, str) else value
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            self.problem(path, f"{path[-1]}: a script name or a list of them")
            return []
        tasks = []
        for i, ref in enumerate(refs):
            where = (*path, i) if isinstance(value, list) else path
            task = self._task({"task": "run_script", "params": {"script": ref}, "name": f"{label}: {ref}"},
                              where, methods, None)  # fmt: skip
            if task is not None:
                tasks.append(task)
        return tasks

    def _task(self, raw, path, methods, storage) -> Task | None:
        if isinstance(raw, str):
            raw = {"task": raw}
        if not isinstance(raw, dict):
            self.problem(path, "a task is a mapping with task: <kind> (or just the kind's name)")
            return None
        allowed = {"task", "name", "params", "timeout", "retries", "backoff", "on_failure"}
        for key in sorted(set(raw) - allowed, key=str):
            self.problem((*path, key), f"unknown key {key!r}; a task has {', '.join(sorted(allowed))}")
        name = raw.get("task")
        kind = taskkinds.get(name) if isinstance(name, str) else None
        if name is None:
            self.problem(path, "a task needs task: <kind> (its params go under params:)")
            return None
        if kind is None:
            close = difflib.get_close_matches(str(name), taskkinds.TASKS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.problem((*path, "task"), f"unknown task {name!r}{hint}; see the task reference")
            return None
        off = [m for m in methods if kind.methods and m not in kind.methods]
        if off:
            self.problem((*path, "task"), f"{name} does not run in {off[0]} installs")
        params = raw.get("params", {})
        if not isinstance(params, dict):
            self.problem((*path, "params"), "params: a mapping")
            params = {}
        params = self._params(kind, params, (*path, "params"), storage)
        timeout_s = None
        if "timeout" in raw:
            try:
                timeout_s = parse_duration(raw["timeout"])
            except ValueError:
                self.problem((*path, "timeout"), 'timeout: seconds, or "30m", "2h": from 1 s to 7 days')
        retries = raw.get("retries", kind.default_retries)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            self.problem((*path, "retries"), f"retries: a whole number from 0 to {MAX_RETRIES}")
            retries = 0
        safe = kind.safe_to_repeat
        if kind.name == "run_script" and isinstance(params.get("script"), str):
            found = self.library.script(params["script"])
            safe = bool(found and found.get("safe_to_repeat"))
        if retries and kind.destructive and not safe:
            what = (
                "the script does not declare itself safe to repeat"
                if kind.name == "run_script"
                else ("it is not safe to repeat")
            )
            self.problem((*path, "retries"), f"{name} destroys data and {what}: retries must be 0")
        backoff_s = None
        if "backoff" in raw:
            try:
                backoff_s = float(parse_duration(raw["backoff"]))
            except ValueError:
                self.problem((*path, "backoff"), "backoff: seconds before the first retry (doubling after)")
        on_failure = raw.get("on_failure", "fail")
        if on_failure not in ("fail", "continue"):
            self.problem((*path, "on_failure"), "on_failure: fail (the install fails) or continue (marked, goes on)")
        if on_failure == "continue" and kind.waits:
            self.problem((*path, "on_failure"), f"{name} waits for the machine: the install cannot go on without it")
        label = raw.get("name") or ""
        if not isinstance(label, str) or len(label) > 100:
            self.problem((*path, "name"), "name: a label of up to 100 characters")
            label = ""
        return Task(
            task=kind.name,
            name=label or KINDS[kind.step_kind].title(kind.name if kind.category == Category.AGENT else ""),
            params=params,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            on_failure=on_failure if on_failure in ("fail", "continue") else "fail",
            line=self.line(*path),
        )

    def _params(self, kind, params, path, storage) -> dict:
        out = {}
        for key, value in params.items():
            spec = kind.param(key)
            here = (*path, key)
            if spec is None:
                names = ", ".join(p.name for p in kind.params) or "none"
                self.problem(here, f"{kind.name} has no parameter {key!r} (it has: {names})")
                continue
            self._param_value(kind, spec, value, here)
            out[key] = value
        if kind.name == "hardware_raid":
            self._hardware_raid(out, path)
        for spec in kind.params:
            if spec.required and spec.name not in out and not _from_storage(kind.name, spec.name, storage):
                self.problem(path[:-1], f"{kind.name} needs the parameter {spec.name!r}: {spec.doc}")
        return out

    def _param_value(self, kind, spec, value, path) -> None:
        where = f"{kind.name}.{spec.name}"
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            return  # a template: checked when rendered
        ok = {
            ParamType.STRING: lambda v: isinstance(v, str),
            ParamType.INTEGER: lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            ParamType.BOOLEAN: lambda v: isinstance(v, bool),
            ParamType.STRINGS: lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
            ParamType.SCRIPT: lambda v: isinstance(v, str),
            ParamType.CHOICE: lambda v: str(v) in spec.choices,
            ParamType.MAPPING: lambda v: isinstance(v, dict),
            ParamType.DRIVE_IDS: lambda v: (
                v == "all" or (isinstance(v, list) and v and all(isinstance(i, str) and i.strip() for i in v))
            ),
        }
        if spec.type in (ParamType.DISK, ParamType.DISKS):
            if spec.type == ParamType.DISK and isinstance(value, list):
                self.problem(path, f"{where}: one disk (a path or a hint), not a list")
            else:
                self._disks(value, path, where)
            return
        if not ok[spec.type](value):
            article = "an" if spec.type[0] in "aeiou" else "a"
            expected = f"one of {', '.join(spec.choices)}" if spec.choices else f"{article} {spec.type}"
            self.problem(path, f"{where}: {value!r} is not {expected}")
            return
        if spec.type == ParamType.SCRIPT and self.library.script(value) is None:
            self.problem(path, f"{where}: no script {value!r} in the script library")

    def _hardware_raid(self, params, path) -> None:
        """A listed set of drives must be enough for the level, and name each drive once."""
        level, drives = params.get("level"), params.get("drives")
        if level not in RaidLevel.__members__ or not isinstance(drives, list) or not drives:
            return  # what is wrong with them is reported already
        if len(set(drives)) != len(drives):
            self.problem((*path, "drives"), "hardware_raid.drives: a drive is listed twice")
        problem = raid_drive_count_problem(RaidLevel(level), len(drives))
        if problem:
            self.problem((*path, "drives"), f"hardware_raid.drives: {problem}")

    def _order(self, workflow: Workflow) -> None:
        """Every task's needs met by what runs before it; waits alone; phases only forward."""
        methods = workflow.methods or tuple(InstallMethod.values)
        for method in methods:
            provided: set[str] = set()
            phase_at = 0
            phase_line = 0
            for stage in workflow.stages:
                in_stage: set[str] = set()
                phases = {KINDS[t.kind.step_kind].phase for t in stage.tasks} - {None}
                if stage.parallel and len(phases) > 1:
                    message = f"stage {stage.name!r} runs tasks of different install phases in parallel: split it"
                    self.problems.append(Problem(stage.line, message))
                for task in stage.tasks:
                    kind = task.kind
                    if stage.parallel and kind.waits:
                        message = f"{kind.name} waits for the machine: it needs a serial stage"
                        self.problems.append(Problem(task.line, message))
                    have = provided if stage.parallel else provided | in_stage
                    needed = set(taskkinds.needs(kind, method))
                    if _writes_array(task):
                        needed.add("array")
                    for need in sorted(needed - have):
                        later = _provider_after(workflow, task, need)
                        where = f" (the {later.task} at line {later.line} comes too late)" if later else ""
                        self.problems.append(
                            Problem(task.line, f"{kind.name} needs {_NEED_PHRASES.get(need, need)}{where}")
                        )
                    own = KINDS[kind.step_kind].phase
                    phase = phase_at if own is None else _PHASE_ORDER.index(own)
                    if phase < phase_at:
                        message = f"{kind.name} belongs before the task at line {phase_line}: phases only go forward"
                        self.problems.append(Problem(task.line, message))
                    elif phase > phase_at:
                        phase_at, phase_line = phase, task.line
                    in_stage |= kind.provides
                provided |= in_stage
            if self.problems:
                return

    def _templates(self, workflow: Workflow) -> None:
        """Every template compiles, and renders for an example machine."""
        sources = []
        for _, _, task in workflow.tasks():
            for value in _strings(task.params):
                if "{{" in value or "{%" in value:
                    try:
                        jinja2.Environment().parse(value)
                    except jinja2.TemplateSyntaxError as exc:
                        self.problems.append(Problem(task.line, f"{task.task}: template error: {exc.message}"))
                        continue
                    sources.append((task, value))
        if self.problems or not sources:
            return
        try:
            render_many([s for _, s in sources], example_context())
        except ParamRenderError as exc:
            task = sources[exc.index][0]
            self.problems.append(Problem(task.line, f"{task.task}: template error: {exc.reason}"))


def _at(task: Task, line: int) -> Task:
    return Task(**{**asdict(task), "line": line})


def _disk_count(disks) -> int | None:
    if isinstance(disks, list):
        return len(disks)
    if isinstance(disks, dict):
        count = disks.get("count")
        # A malformed count is the hint check's to report; comparing it here would raise.
        return count if isinstance(count, int) and not isinstance(count, bool) else None
    return None


def _from_storage(task: str, param: str, storage: Storage | None) -> bool:
    """Parameters a workflow's storage layout gives when the task leaves them out."""
    if task == "wipe_disks" and param == "disks":
        return True  # the layout's disks, or the profile's disk
    if storage is None or storage.layout == "single":
        return False
    return (task, param) in {("raid", "level"), ("raid", "members"), ("bootloader", "members")}


def _writes_array(task: Task) -> bool:
    disk = task.params.get("disk") if task.task in ("write_image", "grow_root") else None
    return isinstance(disk, str) and disk.startswith("/dev/md")


def _provider_after(workflow: Workflow, task: Task, need: str) -> Task | None:
    seen = False
    for _, _, other in workflow.tasks():
        if other is task:
            seen = True
        elif seen and need in other.kind.provides:
            return other
    return None


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# --- rendering params --------------------------------------------------------------------------------------

_MARK = "\x1eparam-{}\x1e"


class ParamRenderError(ValueError):
    def __init__(self, index: int, reason: str):
        super().__init__(reason)
        self.index = index
        self.reason = reason


def render_many(sources: list[str], context: dict) -> list[str]:
    """Render several param templates in one bounded child process (provisioner/pxe/sandbox.py)."""
    for index, source in enumerate(sources):
        try:
            jinja2.Environment().parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ParamRenderError(index, exc.message) from None
    joined = "".join(_MARK.format(i) + s for i, s in enumerate(sources)) + _MARK.format(len(sources))
    try:
        text = render_template(joined, context, template="workflow params")
    except TemplateError as exc:
        raise _which_failed(sources, context, exc) from None
    out = []
    for i in range(len(sources)):
        start = text.index(_MARK.format(i)) + len(_MARK.format(i))
        out.append(text[start : text.index(_MARK.format(i + 1), start)])
    return out


def _which_failed(sources: list[str], context: dict, error: TemplateError) -> ParamRenderError:
    """Which source made the joined render fail. Sources without newlines all sit on the joined template's
    first line, so its error line cannot tell them apart: render them one at a time (only on this failing
    path). An error none of them gives alone (a bound on the whole) falls back to the line."""
    if len(sources) > 1:
        for index, source in enumerate(sources):
            try:
                render_template(source, context, template="workflow params")
            except TemplateError as exc:
                return ParamRenderError(index, exc.reason)
    return ParamRenderError(_index_at_line(sources, error.lineno), error.reason)


def _index_at_line(sources: list[str], line: int | None) -> int:
    if not line:
        return 0
    seen = 1
    for index, source in enumerate(sources):
        seen += source.count("\n")
        if line <= seen:
            return index
    return len(sources) - 1


def render_params(params: dict, context: dict) -> dict:
    """``params`` with every template string rendered from ``context``; others as they are."""
    templated = [s for s in _strings(params) if "{{" in s or "{%" in s]
    if not templated:
        return params
    rendered = dict(zip(templated, render_many(templated, context), strict=True))

    def swap(value):
        if isinstance(value, str):
            return rendered.get(value, value)
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    return swap(params)


def example_context() -> dict:
    """What params render from, for an example machine: every key a real install has."""
    disks = [
        {"name": "sda", "path": "/dev/sda", "size_bytes": 480 * 10**9, "model": "EXAMPLE SSD", "serial": "S1",
         "wwn": "0x5000000000000001", "rotational": False},
        {"name": "sdb", "path": "/dev/sdb", "size_bytes": 480 * 10**9, "model": "EXAMPLE SSD", "serial": "S2",
         "wwn": "0x5000000000000002", "rotational": False},
    ]  # fmt: skip
    return {
        "machine": {"hostname": "example", "short": "example", "domain": "example.net", "fqdn": "example.example.net",
                    "mac": "52:54:00:00:00:01", "ip": "192.0.2.10", "prefix": 24, "gateway": "192.0.2.1",
                    "dns": ["192.0.2.53"]},
        "site": {"slug": "example"},
        "profile": {"name": "example", "method": "image", "image_url": "http://192.0.2.1/image.raw.xz"},
        "facts": {"cpus": 8, "memory_bytes": 32 * 2**30, "disks": disks, "nics": [], "efi": False},
        "storage": {"layout": "raid1", "devices": ["/dev/sda", "/dev/sdb"], "array": "/dev/md0"},
    }  # fmt: skip


# --- entry points ------------------------------------------------------------------------------------------


def check(text: str, library: Library | None = None) -> Workflow:
    """Read and check a workflow document. Raises WorkflowInvalid with every problem found, by line."""
    return _Checker(text, library or NoLibrary()).run()


def stock_text(method: str) -> str:
    name = "image" if method == InstallMethod.IMAGE else "installer"
    return (STOCK_DIR / f"{name}.yaml").read_text()


# Every stock workflow a profile may name, by name: the method's default ones, and those that boot by virtual
# media for sites without DHCP or PXE on the provisioning network.
STOCK_FILES = {
    "stock-image": "image.yaml",
    "stock-installer": "installer.yaml",
    "stock-image-virtual-media": "image-virtual-media.yaml",
    "stock-installer-virtual-media": "installer-virtual-media.yaml",
    "stock-commission": "commission.yaml",
    "stock-test": "test.yaml",
    "stock-release": "release.yaml",
}
# The workflow each operation runs when the request names none.
STOCK_FOR_PURPOSE = {"commission": "stock-commission", "test": "stock-test", "release": "stock-release"}


def is_stock(name: str) -> bool:
    return name in STOCK_FILES


def stock_text_named(name: str) -> str:
    return (STOCK_DIR / STOCK_FILES[name]).read_text()


def stock(method: str) -> Workflow:
    """What an install of ``method`` does when its profile names no workflow: what installs always did."""
    return check(stock_text(method))


def stock_names() -> dict[str, str]:
    return {InstallMethod.IMAGE: "stock-image", **{m: "stock-installer" for m in InstallMethod.values if m != "image"}}
