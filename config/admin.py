"""The admin site, as Django documents overriding it: an AdminSite subclass, made the default site by
config.apps.AdminConfig (so every app's ``admin.site.register`` lands here)."""

from django.contrib import admin

from accounts.roles import Role, has_role
from accounts.throttle import ThrottledAdminAuthenticationForm, answers_429


class ProvisionerAdminSite(admin.AdminSite):
    site_header = "provisioner"
    site_title = "provisioner"
    index_title = "Inventory and administration"
    # The admin site's own login page counts and refuses failed logins as ours does; without this it was a
    # way around the lockout for staff accounts.
    login_form = ThrottledAdminAuthenticationForm

    def has_permission(self, request):
        """The admin site is for the admin role (inventory, profiles, credentials, users), not for is_staff."""
        return has_role(request.user, Role.ADMIN)

    def login(self, request, extra_context=None):
        """A refused login answers 429, as the site's own login page does."""
        return answers_429(super().login)(request, extra_context)
