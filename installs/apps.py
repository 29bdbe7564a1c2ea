from django.apps import AppConfig


class InstallsConfig(AppConfig):
    name = "installs"
    verbose_name = "Installs"

    def ready(self):
        # Imported for its receiver: batches admit the next installs when one ends (engine.install_ended).
        # Here, because the models must be loaded first.
        from . import batches  # noqa: F401
