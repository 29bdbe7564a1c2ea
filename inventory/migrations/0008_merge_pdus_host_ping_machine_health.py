from django.db import migrations


class Migration(migrations.Migration):
    """PDU outlets, host ping with site BMC defaults, and machine health were added side by side."""

    dependencies = [
        ("inventory", "0007_host_ping_and_site_bmc_credentials"),
        ("inventory", "0007_machine_health"),
        ("inventory", "0007_pdus"),
    ]

    operations = []
