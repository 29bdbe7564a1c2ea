from django.apps import AppConfig


class SerialConsoleConfig(AppConfig):
    name = "serialconsole"
    verbose_name = "Serial console"
