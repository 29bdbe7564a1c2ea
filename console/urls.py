"""Every page and the REST API. The Django admin edits inventory; these pages read it and act on it."""

from django.urls import include, path

from .rest import api
from .views import (
    audit,
    batches,
    bulk_import,
    dashboard,
    discovered,
    installs,
    inventory,
    lifecycle,
    preferences,
    profiles,
    serial,
    sites,
    tags,
)

inventory_pages = (
    [
        path("machines/", inventory.machine_list, name="machine-list"),
        path("machines/export.csv", inventory.machine_export, name="machine-export"),
        path("machines/action", inventory.machine_action, name="machine-action"),
        path("machines/tags", tags.machine_tags_bulk, name="machine-tags-bulk"),
        path("machines/import", bulk_import.machine_import, name="machine-import"),
        path("machines/columns", preferences.machine_columns, name="machine-columns"),
        path("machines/<str:hostname>/", inventory.machine_detail, name="machine-detail"),
        path("machines/<str:hostname>/protect", inventory.machine_protect, name="machine-protect"),
        path("machines/<str:hostname>/tags", tags.machine_tags, name="machine-tags"),
        path("machines/<str:hostname>/mark", lifecycle.machine_mark, name="machine-mark"),
        path("machines/<str:hostname>/hardware/", lifecycle.machine_hardware, name="machine-hardware"),
        path(
            "machines/<str:hostname>/hardware/<int:version>/",
            lifecycle.machine_hardware,
            name="machine-hardware-version",
        ),
        path("machines/<str:hostname>/ping", inventory.machine_ping, name="machine-ping"),
        path("machines/<str:hostname>/host-ping", inventory.machine_host_ping, name="machine-host-ping"),
        path("credential-tests/<int:check_id>/", inventory.credential_check, name="credential-check"),
        path("machines/<str:hostname>/health", inventory.machine_health_refresh, name="machine-health-refresh"),
        path("machines/<str:hostname>/sel-clear", inventory.machine_sel_clear, name="machine-sel-clear"),
        path(
            "machines/<str:hostname>/preview/<str:profile>/<str:what>",
            inventory.machine_preview,
            name="machine-preview",
        ),
        path("discovered/", discovered.discovered_list, name="discovered-list"),
        path("discovered/<int:pk>/", discovered.discovered_detail, name="discovered-detail"),
        path("discovered/<int:pk>/accept", discovered.discovered_accept, name="discovered-accept"),
        path("discovered/<int:pk>/discard", discovered.discovered_discard, name="discovered-discard"),
        path("discovered/<int:pk>/inventory", discovered.discovered_inventory, name="discovered-inventory"),
        path("discovered/<int:pk>/forget", discovered.discovered_forget, name="discovered-forget"),
        path("racks/", inventory.rack_list, name="rack-list"),
        path("racks/<int:rack_id>/", inventory.rack_detail, name="rack-detail"),
        path("sites/", sites.site_list, name="site-list"),
        path("sites/<slug:slug>/", sites.site_overview, name="site-overview"),
    ],
    "inventory",
)

audit_pages = (
    [
        path("", audit.audit_log, name="log"),
        path("export.csv", audit.audit_export, name="export"),
    ],
    "audit",
)

# The serial console and its recordings (not namespaced: ConsoleSession.get_absolute_url uses console-replay).
console_pages = [
    path("machines/<str:hostname>/console/", serial.console_page, name="machine-console"),
    path("console-sessions/<int:session_id>/", serial.replay_page, name="console-replay"),
    path("console-sessions/<int:session_id>/session.cast", serial.cast_download, name="console-cast"),
]

# Install pages are not namespaced: Install.get_absolute_url uses install-detail.
install_pages = [
    path("installs/", installs.install_list, name="install-list"),
    path("installs/<int:install_id>/", installs.install_detail, name="install-detail"),
    path("installs/<int:install_id>/log.txt", installs.install_log, name="install-log"),
    path("installs/<int:install_id>/cancel", installs.install_cancel, name="install-cancel"),
    path("installs/<int:install_id>/retry", installs.install_retry, name="install-retry"),
    path("installs/views/", preferences.install_view_save, name="install-view-save"),
    path("installs/views/<int:view_id>/delete", preferences.install_view_delete, name="install-view-delete"),
    path("batches/", batches.batch_list, name="batch-list"),
    path("batches/<int:batch_id>/", batches.batch_detail, name="batch-detail"),
    path("batches/<int:batch_id>/<str:action>", installs.batch_action, name="batch-action"),
    path("alerts/<int:alert_id>/acknowledge", installs.alert_acknowledge, name="alert-acknowledge"),
    path("profiles/", profiles.profile_list, name="profile-list"),
    path("profiles/<str:name>/", profiles.profile_detail, name="profile-detail"),
    path("workflows/", profiles.workflow_list, name="workflow-list"),
    path("workflows/<str:name>/", profiles.workflow_detail, name="workflow-detail"),
]

urlpatterns = [
    path("", dashboard.home, name="home"),
    path("audit/", include(audit_pages)),
    # django-rq's pages, for the admin role like the Django admin, not for is_staff (see queue_pages)
    path("django-rq/", include("console.queue_pages")),
    path("api/v1/", api.urls),
    path("", include(inventory_pages)),
    *install_pages,
    *console_pages,
]
