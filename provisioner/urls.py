from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import health, rest, views
from .accounts.roles import Role, has_role
from .accounts.throttle import ThrottledAdminAuthenticationForm, ThrottledLoginView, answers_429

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
    path("", views.home, name="home"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("audit/", include("audit.urls")),
    path("", include("access.urls")),
    # django-rq's pages, for the admin role like the Django admin, not for is_staff (see queue_pages)
    path("django-rq/", include("provisioner.queue_pages")),
    path("account/", include("provisioner.accounts.urls")),
    path("api/v1/", rest.api.urls),
    path("", include("inventory.ui_urls")),
    path("", include("installs.ui_urls")),
    path("", include("installs.urls")),
]
