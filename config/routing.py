"""Websocket routes: browsers, and scripts driving an SSH terminal with an API token (the agent never uses a
websocket)."""

from django.urls import path

from access.consumers import TerminalConsumer, WatchConsumer
from installs.consumers import DashboardConsumer, InstallConsumer
from serialconsole.consumers import SerialConsoleConsumer

websocket_urlpatterns: list = [
    path("ws/installs/<int:install_id>/", InstallConsumer.as_asgi()),
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/machines/<str:hostname>/console/", SerialConsoleConsumer.as_asgi()),
    path("ws/machines/<str:hostname>/terminal/", TerminalConsumer.as_asgi()),
    path("ws/ssh-sessions/<int:session_id>/watch/", WatchConsumer.as_asgi()),
]
