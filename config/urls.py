from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.roles import Role, has_role
from accounts.throttle import ThrottledAdminAuthenticationForm, ThrottledLoginView, answers_429

from . import health

# The admin site is for the admin role (inventory, profiles, credentials, users), not for is_staff.
admin.site.has_permission = lambda request: has_role(request.user, Role.ADMIN)
admin.site.site_header = "provisioner"
admin.site.site_title = "provisioner"
admin.site.index_title = "Inventory and administration"
# The admin site's own login page counts and refuses failed logins as ours does; without this it was a way
# around the lockout for staff accounts.
admin.site.login_form = ThrottledAdminAuthenticationForm
admin.site.login = answers_429(admin.site.login)

urlpatterns = [
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("account/", include("accounts.urls")),
    path("", include("access.urls")),
    # what machines fetch and call: iPXE script, answer files, installer callbacks, the agent's API
    path("", include("installs.urls")),
    path("", include("console.urls")),
]
