"""Bounded rendering of admin-edited templates.

A profile template is code an admin writes, run when an installer fetches its answer file or a
technician previews one. Jinja2's sandbox keeps it from reaching outside its data, but not from using
unbounded time or memory: `{{ ('x' * 400000000)|length }}` allocates 400 MB and two nested
`range(100000)` loops run for hours. So every render runs in a child process of its own, and:

- range() and the operators that build values (`*`, `+`, `~`, `**`) are checked before they allocate,
  so the error names the template line and the bound;
- what the template writes is counted as it is written;
- the child's address space is capped (RLIMIT_AS): whatever else a template finds that allocates (a
  filter's width argument, a string doubled by replace) ends in MemoryError at that line;
- wall time: an alarm in the child stops the template at the line it is running; a child that does not
  answer soon after (stuck inside one long C call) is killed by the parent, and RLIMIT_CPU kills it even
  if the parent died first.

A process rather than a thread because only a process can be stopped from outside: a timed-out thread
goes on burning a core and holding its memory after the request gave up (which is how a runaway template
kept daphne at 100 % after the client left), while a killed process gives both back at once. The child
starts from an empty environment, so a template that escaped the sandbox would find no secrets in it.
A render costs about 0.1 s this way (an interpreter starts and compiles the template), once per answer
file an installer fetches.
"""

from __future__ import annotations

import json
import math
import operator
import resource
import shlex
import signal
import subprocess
import sys
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE_NAME = "<template>"

# An answer file renders in milliseconds (the stock ones in under 5 ms) while the installer waits on
# HTTP and the request holds a daphne thread; two seconds is hundreds of times what a template needs.
RENDER_TIMEOUT_S = 2.0
# How long past the timeout the child may take to answer before it is killed: the alarm fires between
# two Python steps, so only a template stuck in one long C call waits for the kill.
RENDER_KILL_GRACE_S = 1.0
# Preseed, kickstart and user-data files are a few kilobytes, and debian-installer and anaconda keep
# them in RAM during the install; a megabyte leaves room for long %post scripts.
RENDER_MAX_OUTPUT = 1 << 20
# The largest string or list one operator may build: nothing bigger could be written out anyway.
RENDER_MAX_VALUE = RENDER_MAX_OUTPUT
# Templates loop over SSH keys, DNS servers and disks: tens of items.
RENDER_MAX_RANGE = 10_000
# Integers a template computes with (sizes, counters) fit in 64 bits; this allows far more, and stops
# 10 ** 10 ** 9 from computing for hours.
RENDER_MAX_INT_BITS = 4096
# Address space the child may grow by beyond the interpreter it starts as (about 25 MB): a render
# needs a few megabytes, and several renders may run at once on the dashboard host.
RENDER_MAX_MEMORY = 256 << 20


@dataclass(frozen=True)
class Limits:
    timeout_s: float = RENDER_TIMEOUT_S
    max_output: int = RENDER_MAX_OUTPUT
    max_value: int = RENDER_MAX_VALUE
    max_range: int = RENDER_MAX_RANGE
    max_int_bits: int = RENDER_MAX_INT_BITS
    max_memory: int = RENDER_MAX_MEMORY


LIMITS = Limits()


class TemplateError(Exception):
    """An answer-file template failed to render; `lineno` is the template line (None when unknown),
    `bound` the bound it exceeded (None for other errors), `template` what the template is."""

    def __init__(self, reason: str, lineno: int | None = None, *, bound: str | None = None, template: str = ""):
        self.reason = reason
        self.lineno = lineno
        self.bound = bound
        self.template = template
        where = f"line {lineno}" if lineno is not None else "unknown line"
        super().__init__(f"template error{f' in {template}' if template else ''} at {where}: {reason}")


class _BoundExceeded(Exception):
    """Raised inside the template (so Jinja maps it to a template line): a bound was hit."""

    def __init__(self, bound: str, reason: str):
        super().__init__(reason)
        self.bound = bound


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node, frame):  # noqa: N802  (Jinja's visitor naming)
        # `a ~ b` compiles to a join Jinja does not let the sandbox intercept; route it through ours.
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "+", "**"})

    def __init__(self, limits: Limits):
        # Immutable: a template may read the context but not change it (no list.append, dict.update).
        # Not optimized: the optimizer would evaluate constant expressions while compiling, outside the
        # line-numbered render where the bounds report where they were hit.
        super().__init__(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            optimized=False,
        )
        self.limits = limits
        self.filters["shquote"] = lambda value: shlex.quote(str(value))
        self.filters["yaml"] = _yaml_string
        self.globals["range"] = self.bounded_range
        del self.globals["lipsum"]  # placeholder text generator: no use in an answer file, and unbounded

    def bounded_range(self, *args) -> range:
        numbers = range(*args)
        try:
            size = len(numbers)
        except OverflowError:  # more items than a C size: over any bound
            size = numbers.stop - numbers.start
        if size > self.limits.max_range:
            raise _BoundExceeded("range", f"range() of {size} items exceeds the bound of {self.limits.max_range}")
        return numbers

    def _check_value(self, what: str, size: int) -> None:
        if size > self.limits.max_value:
            raise _BoundExceeded("value", f"{what} would build {size} items, over the bound of {self.limits.max_value}")

    def _check_int(self, what: str, bits: float) -> None:
        if bits > self.limits.max_int_bits:
            raise _BoundExceeded(
                "integer", f"{what} would build an integer of about {int(bits)} bits, over {self.limits.max_int_bits}"
            )

    def call_binop(self, context, op: str, left, right):
        if op == "*":
            for seq, count in ((left, right), (right, left)):
                if _size(seq) is not None and isinstance(count, int):
                    self._check_value("repetition", _size(seq) * max(count, 0))
            if isinstance(left, int) and isinstance(right, int):
                self._check_int("multiplication", left.bit_length() + right.bit_length())
            return operator.mul(left, right)
        if op == "+":
            if _size(left) is not None and _size(right) is not None:
                self._check_value("concatenation", _size(left) + _size(right))
            return operator.add(left, right)
        if isinstance(left, int) and isinstance(right, int) and right > 0:
            self._check_int("power", right * max(left.bit_length(), 1))
        return operator.pow(left, right)

    def bounded_concat(self, values) -> str:
        parts = [str(v) for v in values]
        self._check_value("~ concatenation", sum(map(len, parts)))
        return "".join(parts)


def _yaml_string(value: Any) -> str:
    # JSON strings are valid YAML double-quoted scalars, so any value lands in YAML as exactly one scalar.
    return json.dumps(str(value))


def _template_line(exc: BaseException) -> int | None:
    # Jinja rewrites tracebacks so that frames in the template carry its file name and source line numbers.
    lineno = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == TEMPLATE_NAME:
            lineno = line
    return lineno


class _OutOfTime(Exception):
    pass


def _render_here(source: str, context: Mapping[str, Any], limits: Limits) -> str:
    """Compile and render in this process, with the in-template bounds. Raises TemplateError."""
    env = _BoundedSandbox(limits)
    out: list[str] = []
    written = 0
    try:
        template = env.from_string(source)
        chunks = template.generate(dict(context))
        for chunk in chunks:
            written += len(chunk)
            if written > limits.max_output:
                raise TemplateError(
                    f"output exceeds the bound of {limits.max_output} characters",
                    _paused_line(template, chunks),
                    bound="output",
                )
            out.append(chunk)
    except TemplateError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error: {exc.message}", exc.lineno) from None
    except _BoundExceeded as exc:
        raise TemplateError(f"exceeded a render bound: {exc}", _template_line(exc), bound=exc.bound) from None
    except _OutOfTime as exc:
        raise TemplateError(
            f"rendering took longer than the bound of {limits.timeout_s:g} s and was stopped",
            _template_line(exc),
            bound="time",
        ) from None
    except MemoryError as exc:
        raise TemplateError(
            f"rendering needed more memory than the bound of {limits.max_memory >> 20} MiB",
            _template_line(exc),
            bound="memory",
        ) from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"undefined: {exc.message}", _template_line(exc)) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"refused by the sandbox: {exc}", _template_line(exc)) from None
    except Exception as exc:  # the template is admin-written code: any failure in it is a template error
        raise TemplateError(f"{type(exc).__name__}: {exc}", _template_line(exc)) from None
    return "".join(out)


def _paused_line(template: jinja2.Template, chunks) -> int | None:
    """The template line that wrote the last chunk: the render's generators are paused there."""
    line = None
    generator = chunks.gi_yieldfrom
    while generator is not None and getattr(generator, "gi_frame", None) is not None:
        if generator.gi_frame.f_code.co_filename == TEMPLATE_NAME:
            line = template.get_corresponding_lineno(generator.gi_frame.f_lineno)
        generator = getattr(generator, "gi_yieldfrom", None)
    return line


# --- the child process ------------------------------------------------------------------------

_ROOT = str(Path(__file__).resolve().parents[2])
_CHILD = [
    sys.executable,
    "-I",  # no PYTHON* variables, no user site: the child runs only this code
    "-c",
    f"import sys; sys.path.insert(0, {_ROOT!r}); from provisioner.pxe.sandbox import child_main; child_main()",
]


def _vm_size() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _confine(limits: Limits) -> None:
    """Bounds the kernel enforces on this (child) process."""
    try:
        cap = _vm_size() + limits.max_memory
    except OSError:  # no /proc: not Linux, where provisioner is deployed; the value bounds still hold
        cap = None
    if cap is not None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu = math.ceil(limits.timeout_s + RENDER_KILL_GRACE_S) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # writes no file; its answer goes down a pipe

    def out_of_time(signum, frame):
        raise _OutOfTime()

    signal.signal(signal.SIGALRM, out_of_time)
    signal.setitimer(signal.ITIMER_REAL, limits.timeout_s)


def child_main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    limits = Limits(**request["limits"])
    _confine(limits)
    try:
        answer = {"text": _render_here(request["source"], request["context"], limits)}
    except TemplateError as exc:
        answer = {"reason": exc.reason, "line": exc.lineno, "bound": exc.bound}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()


def render(source: str, context: Mapping[str, Any], *, template: str = "", limits: Limits = LIMITS) -> str:
    """Render ``source`` from the plain-data ``context`` in a bounded child process. Raises TemplateError,
    naming ``template``, the line and, when one was hit, the bound."""
    request = json.dumps({"source": source, "context": context, "limits": asdict(limits)}).encode()
    try:
        done = subprocess.run(
            _CHILD,
            input=request,
            capture_output=True,
            env={},
            cwd="/",
            timeout=limits.timeout_s + RENDER_KILL_GRACE_S,
        )
    except subprocess.TimeoutExpired:  # run() has killed it
        raise TemplateError(
            f"rendering took longer than the bound of {limits.timeout_s:g} s and was stopped",
            bound="time",
            template=template,
        ) from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = None
    if done.returncode != 0 or not isinstance(answer, dict):
        if done.returncode in (-signal.SIGKILL, -signal.SIGXCPU):
            reason, bound = f"rendering used more CPU than the bound of {limits.timeout_s:g} s and was stopped", "time"
        else:
            last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            reason, bound = f"the renderer failed (exit {done.returncode}): {last[0][:300]}", None
        raise TemplateError(reason, bound=bound, template=template)
    if "text" in answer:
        return answer["text"]
    raise TemplateError(answer["reason"], answer["line"], bound=answer["bound"], template=template)
