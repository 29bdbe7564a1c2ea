"""The three role groups. Admins also get Django's model permissions so the admin site works for them."""

from django.db import migrations

ADMIN_APPS = ("inventory", "accounts", "installs")


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    for name in ("viewer", "technician", "admin"):
        Group.objects.get_or_create(name=name)
    admin = Group.objects.get(name="admin")
    types = ContentType.objects.filter(app_label__in=ADMIN_APPS)
    perms = list(Permission.objects.filter(content_type__in=types))
    perms += list(Permission.objects.filter(content_type__app_label="auth", content_type__model="group"))
    perms += list(Permission.objects.filter(content_type__app_label="audit", codename__startswith="view_"))
    admin.permissions.set(perms)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["viewer", "technician", "admin"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("inventory", "0003_bmc_reachability_profile_site_fields"),
        ("installs", "0001_initial"),
        ("audit", "0002_append_only"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
