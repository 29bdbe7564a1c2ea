"""django-rq's pages run under our strict script policy (config/security.py). That holds only while
their inline scripts and handlers are the ones we judged dead or cosmetic; these tests read the installed
templates, so an upgrade of django-rq or Django that changes them fails here rather than in an admin's
browser."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
from pathlib import Path

SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
HANDLER = re.compile(r"""\son([a-z]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)

# The block every django-rq list page carries: `$("tr input.action-select").actions()` on django.jQuery.
DEAD_ACTIONS_BLOCK = "sha256-1kZe1KRxelr3ptMPsod17Z6BDvbtm4WcufgsZGvsErM="
JOB_DETAIL_HANDLERS = [
    ("click", "window.location='{% rq_url 'result_detail' queue_index job.id result.id %}'"),
    ("click", "event.stopPropagation();"),
]


def package_dir(name: str) -> Path:
    return Path(importlib.util.find_spec(name).origin).parent


def templates() -> dict[str, str]:
    root = package_dir("django_rq") / "templates"
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.html"))}


def csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_django_rq_inline_scripts_are_only_the_dead_actions_call():
    inline = {}
    for name, text in templates().items():
        for attrs, body in SCRIPT.findall(text):
            if "src=" in attrs:
                assert "{% static" in attrs, (name, attrs)  # served by us, so script-src 'self' allows it
            else:
                inline.setdefault(csp_hash(body), []).append(name)
    assert set(inline) == {DEAD_ACTIONS_BLOCK}, (
        f"django-rq's inline scripts changed: {inline}; decide whether our CSP must allow them "
        "(config/security.py, docs/design.md)"
    )
    assert "django_rq/jobs.html" in inline[DEAD_ACTIONS_BLOCK]


def test_the_admin_actions_script_initialises_itself_and_has_no_jquery_plugin():
    """Why the inline block is dead and the bulk actions still work: actions.js binds the checkboxes on
    its own, and `$.fn.actions`, which the inline block calls, no longer exists."""
    actions = (package_dir("django") / "contrib/admin/static/admin/js/actions.js").read_text()
    assert "document.querySelectorAll('tr input.action-select')" in actions
    assert "fn.actions" not in actions


def test_django_rq_inline_handlers_are_only_the_job_pages_result_rows():
    found = [
        (name, event.lower(), double or single)
        for name, text in templates().items()
        for event, double, single in HANDLER.findall(text)
    ]
    assert found == [("django_rq/job_detail.html", event, code) for event, code in JOB_DETAIL_HANDLERS], found
