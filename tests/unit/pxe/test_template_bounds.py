"""Each render bound stops its attack in bounded time and memory. Every attack is rendered from a fresh
interpreter that reports how long the render took, the peak memory of the renderer process it started
and its own: the template's work happens in the renderer, within its bounds, and never in the process
that asked for it (daphne, a worker)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from provisioner.pxe import TemplateError, render_template, sandbox
from tests.unit.pxe.support import REPO

HARNESS = """
import json, resource, sys, time
from provisioner.pxe import sandbox
source = sys.stdin.read()
started = time.monotonic()
try:
    sandbox.render(source, {"hostname": "node01"}, template="profile attack")
    error = None
except sandbox.TemplateError as exc:
    error = {"bound": exc.bound, "line": exc.lineno, "message": str(exc)}
print(json.dumps({
    "error": error,
    "seconds": time.monotonic() - started,
    "renderer_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, from the pytest process this one forked from.
    "asker_mb": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024,
}))
"""

# What an interpreter with Jinja2 loaded occupies, measured as the renderer starts: ~20 MB.
BASELINE_MB = 40
MEMORY_CAP_MB = BASELINE_MB + sandbox.RENDER_MAX_MEMORY / 2**20
TIME_CAP_S = sandbox.RENDER_TIMEOUT_S + sandbox.RENDER_KILL_GRACE_S + 1.0  # + interpreter start-ups


def attack(source: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", HARNESS], input=source, capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# (name, template, bound hit, template line, refused before the value is built)
ATTACKS = [
    ("400 MB string", "ok\n{{ ('x' * 400000000)|length }}\n", "value", 2, True),
    ("400 MB list", "{{ ([0] * 400000000)|length }}", "value", 1, True),
    ("huge range", "{% for i in range(100000000) %}{% endfor %}", "range", 1, True),
    (
        "nested loops",
        "a\n{% for i in range(10000) %}\n{% for j in range(10000) %}{% endfor %}\n{% endfor %}\n",
        "time",
        3,
        True,
    ),
    ("output flood", "a\n{% for i in range(10000) %}\n{{ 'x' * 1000 }}\n{% endfor %}\n", "output", 3, True),
    (
        "doubling with ~",
        "{% set ns = namespace(s='x') %}\n{% for i in range(64) %}\n{% set ns.s = ns.s ~ ns.s %}\n{% endfor %}",
        "value",
        3,
        True,
    ),
    (
        "doubling with +",
        "{% set ns = namespace(s=['x']) %}\n{% for i in range(64) %}\n{% set ns.s = ns.s + ns.s %}\n{% endfor %}",
        "value",
        3,
        True,
    ),
    ("huge power", "\n{{ 10 ** 100000000 }}", "integer", 2, True),
    ("width argument", "\n\n{{ hostname|center(400000000) }}", "memory", 3, False),
    ("format width", "{{ '%400000000s'|format(hostname)|length }}", "memory", 1, False),
    (
        "doubling with replace",
        "{% set ns = namespace(s='x' * 1000) %}\n{% for i in range(40) %}\n{% set ns.s = ns.s|replace('x', 'xx') %}"
        "\n{% endfor %}",
        # Each pass is a little slower than the last: on a loaded machine the 2 s bound can come first.
        ("memory", "time"),
        3,
        False,
    ),
]


@pytest.mark.parametrize(("name", "source", "bound", "line", "early"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_each_bound_stops_its_attack_in_bounded_time_and_memory(name, source, bound, line, early):
    result = attack(source)
    error = result["error"]
    assert error is not None, f"{name} rendered"
    assert error["bound"] in ((bound,) if isinstance(bound, str) else bound), error
    assert error["line"] == line, error
    assert f"in profile attack at line {line}" in error["message"]
    assert result["seconds"] < TIME_CAP_S, result
    assert result["renderer_mb"] < (BASELINE_MB if early else MEMORY_CAP_MB), result
    assert result["asker_mb"] < BASELINE_MB + 20, result


def test_the_errors_say_which_bound_was_hit():
    with pytest.raises(TemplateError, match=r"range\(\) of 100000 items exceeds the bound of 10000"):
        render_template("{{ range(100000)|length }}", {})
    with pytest.raises(TemplateError, match=r"longer than the bound of 2 s"):
        render_template("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", {})
    with pytest.raises(TemplateError, match=rf"more memory than the bound of {sandbox.RENDER_MAX_MEMORY >> 20} MiB"):
        render_template("{{ 'x'|center(400000000) }}", {})
    with pytest.raises(TemplateError, match=r"output exceeds the bound of 1048576 characters"):
        render_template("{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}", {})


def test_what_fits_the_bounds_renders():
    ten_k = render_template("{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}", {})
    assert len(ten_k) == 1_000_000
    assert (
        render_template("{{ ('ab' ~ 'c') * 2 }} {{ 2 ** 64 }} {{ [1, 2] + [3] }}", {})
        == "abcabc 18446744073709551616 [1, 2, 3]"
    )


def test_a_renderer_that_ignores_its_alarm_is_killed(monkeypatch):
    """Stuck inside one long C call, the alarm cannot stop the template: the parent kills the renderer."""
    stuck = "import signal, sys, time; sys.stdin.read(); signal.signal(signal.SIGALRM, signal.SIG_IGN); time.sleep(60)"
    monkeypatch.setattr(sandbox, "_CHILD", [sys.executable, "-c", stuck])
    started = time.monotonic()
    with pytest.raises(TemplateError, match="longer than the bound") as exc:
        sandbox.render("{{ 1 }}", {})
    assert exc.value.bound == "time"
    assert time.monotonic() - started < sandbox.RENDER_TIMEOUT_S + sandbox.RENDER_KILL_GRACE_S + 0.5


def test_the_renderer_sees_none_of_the_callers_environment(monkeypatch):
    """A template that escaped the sandbox would find no secret of the process that asked for it."""
    monkeypatch.setenv("PROVISIONER_FIELD_KEYS", "canary-field-key")
    probe = "import json, os, sys; sys.stdin.read(); print(json.dumps({'text': json.dumps(dict(os.environ))}))"
    monkeypatch.setattr(sandbox, "_CHILD", [*sandbox._CHILD[:2], "-c", probe])
    seen = json.loads(sandbox.render("", {}))
    assert "PROVISIONER_FIELD_KEYS" not in seen and "canary-field-key" not in json.dumps(seen)
