from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.http import require_GET

from accounts.throttle import ThrottledLoginView

from . import health, metrics


@require_GET
def favicon(request):
    # Resolved per request: the hashed name exists only once collectstatic wrote the manifest. Not permanent,
    # so a new icon (a new hash) reaches browsers that asked before.
    return redirect(static("img/favicon.svg"))


urlpatterns = [
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    # Browsers ask for /favicon.ico whatever the page links; the icon is an SVG among the static files.
    path("favicon.ico", favicon, name="favicon"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("account/", include("accounts.urls")),
    path("", include("access.urls")),
    path("", include("access.session_urls")),
    # what machines fetch and call: iPXE script, answer files, installer callbacks, the agent's API
    path("", include("installs.urls")),
    path("", include("console.urls")),
]
