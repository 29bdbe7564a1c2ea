from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "SSH access"

    def ready(self):
        # Imported for its receiver: load_demo's lab inventory brings the lab's jump host (inventory.lab_loaded).
        from . import lab  # noqa: F401
