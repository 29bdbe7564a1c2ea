"""{% load roles %} ... {% if user|has_role:"technician" %}: what a template may offer this user.
The role is cached on the user object, so the view's own check and the template's cost one query."""

from django import template

from accounts.roles import Role
from accounts.roles import has_role as _has_role

register = template.Library()


@register.filter
def has_role(user, name: str) -> bool:
    return _has_role(user, Role[name.upper()])
