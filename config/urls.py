from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.throttle import ThrottledLoginView

from . import health, metrics

urlpatterns = [
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("account/", include("accounts.urls")),
    path("", include("access.urls")),
    path("", include("access.session_urls")),
    # what machines fetch and call: iPXE script, answer files, installer callbacks, the agent's API
    path("", include("installs.urls")),
    path("", include("console.urls")),
]
