from django.apps import AppConfig


class InstallsConfig(AppConfig):
    name = "installs"
    verbose_name = "Installs"

    def ready(self):
        # Imported for its receiver: batches admit the next installs when one ends (engine.install_ended).
        # Here, because the models must be loaded first.
        from inventory import alerting
        from inventory.models import PROFILE_CHECKS

        from . import (
            batches,  # noqa: F401
            discovery_signals,
        )
        from .alerts import raise_machine_alert
        from .library import check_profile

        if check_profile not in PROFILE_CHECKS:
            PROFILE_CHECKS.append(check_profile)
        # Inventory notices what is wrong with a machine; alerts and their e-mail are ours.
        if raise_machine_alert not in alerting.SINKS:
            alerting.SINKS.append(raise_machine_alert)
        # A site's TFTP root follows its discovery setting and the NICs of inventory.
        discovery_signals.connect()
