from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from django.db.models.signals import post_migrate

        from . import throttle  # noqa: F401  (counts failed logins)
        from .permissions import grant_admin_permissions

        post_migrate.connect(grant_admin_permissions, dispatch_uid="accounts.grant_admin_permissions")
