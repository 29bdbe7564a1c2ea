from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "provisioner.accounts"
    label = "accounts"
    verbose_name = "Accounts"
