"""The technician's inventory pages (the Django admin edits inventory; these read it and act on it)."""

from django.urls import path

from . import views

app_name = "inventory"
urlpatterns = [
    path("machines/", views.machine_list, name="machine-list"),
    path("machines/export.csv", views.machine_export, name="machine-export"),
    path("machines/action", views.machine_action, name="machine-action"),
    path("machines/<str:hostname>/", views.machine_detail, name="machine-detail"),
    path("machines/<str:hostname>/protect", views.machine_protect, name="machine-protect"),
    path("machines/<str:hostname>/ping", views.machine_ping, name="machine-ping"),
    path("machines/<str:hostname>/preview/<str:profile>/<str:what>", views.machine_preview, name="machine-preview"),
    path("racks/", views.rack_list, name="rack-list"),
    path("racks/<int:rack_id>/", views.rack_detail, name="rack-detail"),
]
