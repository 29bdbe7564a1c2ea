"""Websocket routes: browsers only (the agent never uses a websocket)."""

from django.urls import path

from installs.consumers import DashboardConsumer, InstallConsumer
from serialconsole.consumers import SerialConsoleConsumer

websocket_urlpatterns: list = [
    path("ws/installs/<int:install_id>/", InstallConsumer.as_asgi()),
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/machines/<str:hostname>/console/", SerialConsoleConsumer.as_asgi()),
]
