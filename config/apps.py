from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """django.contrib.admin with our site as the default one. The site is named by its path and loaded
    once the apps are ready: config.admin imports the accounts app's forms, which need the models."""

    default_site = "config.admin.ProvisionerAdminSite"
