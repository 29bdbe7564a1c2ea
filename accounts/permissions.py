"""The admin role's model permissions, kept whole as apps gain models.

The roles migration gave the admin group Django's permissions for the models that existed then; a model added
later (PDUs, jump hosts, webhook endpoints, tags) had none, and an admin who is not a superuser got 403 on its
admin page. After every migrate (and every test database flush) this grants the admin group every permission of
the apps whose models admins edit. The model admins still refuse what no one may do (adding a CA by hand,
changing a webhook delivery), whatever the permissions say.
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS

from .roles import GROUP_NAMES, Role

# The apps whose models the admin site edits for the admin role.
ADMIN_APPS = ("inventory", "accounts", "installs", "access", "webhooks")


def grant_admin_permissions(sender, using=DEFAULT_DB_ALIAS, apps=None, **kwargs) -> None:
    """post_migrate: give the admin group the permissions of ``sender``'s models, if it is one of ADMIN_APPS.
    Django's own handler (connected first, by django.contrib.auth) has created them by then."""
    if sender.label not in ADMIN_APPS or apps is None:
        return
    try:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
    except LookupError:  # auth is not migrated yet
        return
    admin = Group.objects.using(using).filter(name=GROUP_NAMES[Role.ADMIN]).first()
    if admin is None:  # the roles migration makes it; before that there is nobody to grant to
        return
    admin.permissions.add(*Permission.objects.using(using).filter(content_type__app_label=sender.label))
