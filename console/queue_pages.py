"""django-rq's queue pages (/django-rq/), for the admin role, like the Django admin.

django-rq guards each page with Django's ``staff_member_required`` and lets ``is_staff`` read its
stats.json. Here roles decide and ``is_staff`` alone grants nothing (accounts.roles), so
without this module a staff user with no role could delete and requeue jobs, and an admin who is not
staff was sent to the admin login.

The pages are mounted from django-rq's own ``get_admin_urlpatterns``, each view wrapped twice:
``require_role(Role.ADMIN)`` answers first (our login page for anonymous users, 403 below admin), then
django-rq's view runs with a ``request.user`` whose ``is_staff`` means "has the admin role", which
satisfies its staff check. Peeling that check off instead, through the decorators' ``__wrapped__``
chain, depends on the order of django-rq's decorators and on the closures of Django's, and a wrong
guess drops ``never_cache`` or ``require_POST`` without a sound. Translating the user touches no
decorator: all of them still run, in django-rq's order, on every page, including pages a later release
adds. Should django-rq check something other than ``is_staff`` one day, admins are refused rather than
others let in, and tests/integration/ui/test_roles.py fails.

stats.json (and the Prometheus metrics, if ``prometheus_client`` is installed) keep django-rq's own
authentication, which must work without a session: its API token (``RQ_API_TOKEN``, none by default),
or a signed-in user it takes for staff, which here again means the admin role.
"""

from __future__ import annotations

from functools import wraps
from inspect import iscoroutinefunction

from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern
from django.utils.functional import SimpleLazyObject
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

from accounts.roles import Role, has_role, require_role

app_name = "django_rq"  # the namespace django-rq's templates and redirects reverse


class _UserForDjangoRQ(SimpleLazyObject):
    """The request's user as django-rq sees it: the same user, whose ``is_staff`` is the admin role.
    A proxy rather than a modified copy, so nothing can save that ``is_staff`` onto the user's row."""

    @property
    def is_staff(self) -> bool:
        return has_role(self, Role.ADMIN)


def _staff_means_admin(view):
    if iscoroutinefunction(view):
        # An async view reads request.auser(), which this wrapper does not translate.
        raise ImproperlyConfigured(f"django-rq's {view.__qualname__} is async; console.queue_pages needs a look")

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        user = request.user
        request.user = _UserForDjangoRQ(lambda: user)
        try:
            return view(request, *args, **kwargs)
        finally:
            request.user = user

    return wrapped


def _admin_page(view):
    return require_role(Role.ADMIN)(_staff_means_admin(view))


urlpatterns = [
    URLPattern(p.pattern, _staff_means_admin(p.callback), p.default_args, p.name) for p in get_api_urlpatterns()
] + get_admin_urlpatterns(view_wrapper=_admin_page)
