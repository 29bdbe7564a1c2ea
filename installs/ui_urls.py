"""The technician's install pages. Names are not namespaced: Install.get_absolute_url uses install-detail."""

from django.urls import path

from . import views

urlpatterns = [
    path("installs/", views.install_list, name="install-list"),
    path("installs/<int:install_id>/", views.install_detail, name="install-detail"),
    path("installs/<int:install_id>/log.txt", views.install_log, name="install-log"),
    path("installs/<int:install_id>/cancel", views.install_cancel, name="install-cancel"),
    path("installs/<int:install_id>/retry", views.install_retry, name="install-retry"),
    path("batches/<int:batch_id>/<str:action>", views.batch_action, name="batch-action"),
    path("alerts/<int:alert_id>/acknowledge", views.alert_acknowledge, name="alert-acknowledge"),
]
