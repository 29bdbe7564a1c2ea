"""Issue 7: only machine-facing endpoints skip CSRF. The automation API is exempt at Django's level
only because its session authentication does the CSRF check itself (test_rest proves it does)."""

from django.urls import URLPattern, URLResolver, get_resolver

MACHINE_FACING = ("boot/", "i/", "api/agent/v1/")
CHECKS_ITS_OWN = ("api/v1/",)


def walk(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


def test_only_machine_facing_views_are_csrf_exempt():
    exempt = sorted(route for route, view in walk(get_resolver().url_patterns) if getattr(view, "csrf_exempt", False))
    stray = [r for r in exempt if not r.lstrip("^").startswith(MACHINE_FACING + CHECKS_ITS_OWN)]
    assert exempt, "the walk found no exempt view at all: it looks in the wrong place"
    assert not stray, stray
