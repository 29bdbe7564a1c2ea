"""Roles: who may do what. Three Django groups, made by a migration, ordered by power:

viewer      reads everything except secrets
technician  + installs, cancels, retries, power actions, batch control, remote commands
admin       + inventory, profiles, credentials, users (the Django admin), job queues (django-rq's pages)

A superuser counts as admin. A user in no group has no access at all, whatever its is_staff says.
"""

from __future__ import annotations

import enum
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied


class Role(enum.IntEnum):
    NONE = 0
    VIEWER = 1
    TECHNICIAN = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


GROUP_NAMES = {Role.VIEWER: "viewer", Role.TECHNICIAN: "technician", Role.ADMIN: "admin"}


def role_of(user) -> Role:
    if user is None or not user.is_authenticated or not user.is_active:
        return Role.NONE
    if user.is_superuser:
        return Role.ADMIN
    cached = getattr(user, "_provisioner_role", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        cached = max((r for r, n in GROUP_NAMES.items() if n in names), default=Role.NONE)
        user._provisioner_role = cached
    return cached


def has_role(user, role: Role) -> bool:
    return role_of(user) >= role


def require_role(role: Role):
    """View decorator: anonymous users go to the login page; signed-in users below ``role`` get 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                raise PermissionDenied(f"This needs the {role.label} role.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
